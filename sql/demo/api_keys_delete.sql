DELETE FROM public.api_keys WHERE id = %s AND status = 'revoked'
