-- A dividend is scheduled for a holding (1 insert).
\set aid random(1, :allocations)
BEGIN;
SELECT token_id, investor_id, wallet_id FROM public.token_allocations WHERE id = :aid \gset
INSERT INTO public.distributions (token_id, investor_id, wallet_id, allocation_id, distribution_type, amount, currency, record_date, scheduled_for, status, created_by, updated_by)
    VALUES (:token_id, :investor_id, :wallet_id, :aid, 'dividend', round((1 + random() * 100)::numeric, 2), 'USD', current_date, now() + interval '7 days', 'scheduled', 1, 1);
COMMIT;
