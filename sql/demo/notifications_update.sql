UPDATE public.notifications SET status = 'read', read_at = now() WHERE id = %s
