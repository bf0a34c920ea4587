SELECT id FROM public.wallets WHERE investor_id = %s AND status = 'whitelisted'
ORDER BY id LIMIT 1
