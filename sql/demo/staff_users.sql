SELECT DISTINCT user_id FROM public.user_roles WHERE role = ANY(%s) ORDER BY user_id
