UPDATE public.users SET last_seen_at = now() WHERE id = %s
