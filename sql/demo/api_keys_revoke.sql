UPDATE public.api_keys SET status = 'revoked', revoked_at = now(), updated_by = %s
WHERE id = %s AND status = 'active' RETURNING id
