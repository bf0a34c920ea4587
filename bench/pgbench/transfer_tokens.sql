-- A secondary transfer between whitelisted wallets, checked and confirmed (3 inserts, 2 updates).
\set aid random(1, :allocations)
\set to_investor random(1, :investors)
BEGIN;
SELECT token_id, investor_id, wallet_id FROM public.token_allocations WHERE id = :aid \gset
\set uid 10 + :investor_id
INSERT INTO public.token_transfers (token_id, from_wallet_id, to_wallet_id, from_allocation_id, amount, status, created_by, updated_by)
    VALUES (:token_id, :wallet_id, :to_investor, :aid, 1, 'requested', :uid, :uid)
    RETURNING id AS tid \gset
INSERT INTO public.compliance_checks (wallet_id, token_transfer_id, check_type, provider, status, details, checked_at, created_by, updated_by)
    VALUES (:to_investor, :tid, 'transfer_restriction', 'internal', 'passed', '{"rule": "whitelist"}', now(), 1, 1);
UPDATE public.token_allocations SET amount = amount - 1, updated_by = :uid WHERE id = :aid AND amount >= 1;
INSERT INTO public.token_allocations (token_id, investor_id, wallet_id, amount, status, created_by, updated_by)
    VALUES (:token_id, :to_investor, :to_investor, 1, 'minted', 1, 1);
UPDATE public.token_transfers SET status = 'confirmed', tx_hash = '0x' || md5(random()::text), block_number = 19000000 + :tid, updated_by = 1 WHERE id = :tid;
COMMIT;
