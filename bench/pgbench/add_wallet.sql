-- An investor registers a self-custody wallet, which is screened (2 inserts).
\set inv random(1, :investors)
\set uid 10 + :inv
BEGIN;
INSERT INTO public.wallets (investor_id, chain, address, wallet_type, status, created_by, updated_by)
    VALUES (:inv, 'polygon', '0x' || md5(random()::text) || substr(md5(random()::text), 1, 8), 'self_custody', 'pending', :uid, :uid)
    RETURNING id AS wid \gset
INSERT INTO public.compliance_checks (investor_id, wallet_id, check_type, provider, status, details, checked_at, created_by, updated_by)
    VALUES (:inv, :wid, 'wallet_screening', 'chainalysis', 'passed', '{"risk": "low"}', now(), :uid, :uid);
COMMIT;
