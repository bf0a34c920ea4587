-- Tokens are minted to a holder: a new allocation and the token's supply (1 insert, 1 update).
\set aid random(1, :allocations)
\set amount random(1, 500)
BEGIN;
SELECT token_id, investor_id, wallet_id FROM public.token_allocations WHERE id = :aid \gset
INSERT INTO public.token_allocations (token_id, investor_id, wallet_id, amount, status, lockup_until, created_by, updated_by)
    VALUES (:token_id, :investor_id, :wallet_id, :amount, 'minted', now() + interval '180 days', 1, 1);
UPDATE public.tokens SET total_supply = total_supply + :amount, updated_by = 1 WHERE id = :token_id;
COMMIT;
