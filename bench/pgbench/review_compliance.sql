-- An officer closes a compliance check (1 update).
\set cid random(1, :investors)
\set officer random(2, 5)
UPDATE public.compliance_checks SET status = 'passed', score = (random() * 10)::numeric(5, 2), checked_at = now(), updated_by = :officer
 WHERE id = :cid;
