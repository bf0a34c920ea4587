-- An operator settles a redemption and releases the holding (2 updates).
\set rid random(1, :redemptions)
\set officer random(6, 10)
BEGIN;
UPDATE public.redemptions SET status = 'settled', settled_at = now(), payout_amount = round((random() * 1000)::numeric, 2), updated_by = :officer
    WHERE id = :rid RETURNING allocation_id \gset
UPDATE public.token_allocations SET status = 'released', updated_by = :officer WHERE id = :allocation_id;
COMMIT;
