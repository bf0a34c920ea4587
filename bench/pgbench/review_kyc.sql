-- A compliance officer approves a KYC verification (2 updates, 2 inserts).
\set kyc random(1, :investors)
\set uid 10 + :kyc
\set officer random(2, 5)
BEGIN;
UPDATE public.kyc_verifications SET status = 'approved', reviewed_by = :officer, reviewed_at = now(),
       result = jsonb_build_object('score', (random() * 100)::int, 'document_match', true), updated_by = :officer
    WHERE id = :kyc;
UPDATE public.investors SET kyc_status = 'approved', updated_by = :officer WHERE id = :kyc;
INSERT INTO public.compliance_checks (investor_id, check_type, provider, status, score, details, checked_at, created_by, updated_by)
    VALUES (:kyc, 'pep', 'worldcheck', 'passed', (random() * 10)::numeric(5, 2), '{"hits": 0}', now(), :officer, :officer);
INSERT INTO public.notifications (user_id, kind, title) VALUES (:uid, 'kyc', 'Your identity verification was approved');
COMMIT;
