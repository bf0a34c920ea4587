SELECT id, investor_id, wallet_id, amount FROM public.token_allocations
WHERE token_id = %s AND amount > 0 AND status IN ('minted', 'locked', 'released')
AND id >= %s ORDER BY id LIMIT %s
