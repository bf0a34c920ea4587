-- A scheduled payout is paid, and the holder is told (1 update, 1 insert).
\set did random(1, :distributions)
BEGIN;
UPDATE public.distributions SET status = 'paid', paid_at = now(), tx_hash = '0x' || md5(random()::text), updated_by = 1
    WHERE id = :did RETURNING investor_id \gset
\set uid 10 + :investor_id
INSERT INTO public.notifications (user_id, kind, title) VALUES (:uid, 'distribution', 'A distribution was paid to your wallet');
COMMIT;
