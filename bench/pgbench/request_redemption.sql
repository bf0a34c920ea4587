-- A holder asks to redeem: the request, its approval, and the holding is locked (2 inserts, 1 update).
\set aid random(1, :allocations)
BEGIN;
SELECT token_id, investor_id, wallet_id FROM public.token_allocations WHERE id = :aid \gset
\set uid 10 + :investor_id
INSERT INTO public.redemptions (token_id, investor_id, allocation_id, wallet_id, token_amount, currency, status, reason, created_by, updated_by)
    VALUES (:token_id, :investor_id, :aid, :wallet_id, 1, 'USD', 'requested', 'liquidity', :uid, :uid)
    RETURNING id AS rid \gset
INSERT INTO public.approvals (entity_type, entity_id, action, status, requested_by, created_by, updated_by)
    VALUES ('redemption', :rid, 'redemption.approve', 'pending', :uid, :uid, :uid);
UPDATE public.token_allocations SET status = 'locked', updated_by = :uid WHERE id = :aid;
COMMIT;
