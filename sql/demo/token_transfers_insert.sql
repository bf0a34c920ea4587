INSERT INTO public.token_transfers (token_id, from_wallet_id, to_wallet_id,
    from_allocation_id, amount, created_by, updated_by)
VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id
