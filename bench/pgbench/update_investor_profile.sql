-- An investor's risk profile is revised (1 update).
\set inv random(1, :investors)
UPDATE public.investors
   SET risk_rating = (ARRAY['low', 'medium', 'high'])[1 + floor(random() * 3)::int],
       metadata = metadata || jsonb_build_object('reviewed_at', now()::text), updated_by = 10 + id
 WHERE id = :inv;
