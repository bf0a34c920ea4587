INSERT INTO public.wallets (investor_id, chain, address, wallet_type,
    private_key_ref, status, whitelisted_at, created_by, updated_by)
VALUES (%s, %s, %s, %s, %s, %s,
    CASE WHEN %s = 'whitelisted' THEN now() END, %s, %s) RETURNING id
