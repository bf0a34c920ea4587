DELETE FROM public.user_roles
WHERE user_id = %s AND role IN ('viewer', 'analyst')
