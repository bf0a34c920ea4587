INSERT INTO public.users (email, full_name, password_hash, status, mfa_enabled,
    locale, created_by, updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
RETURNING id
