INSERT INTO public.api_keys (user_id, name, key_prefix, key_hash, scopes,
    expires_at, created_by, updated_by)
VALUES (%s, %s, %s, %s, %s, now() + interval '1 year', %s, %s)
