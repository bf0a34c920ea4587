DELETE FROM public.notifications WHERE id IN (SELECT id FROM public.notifications
WHERE user_id = %s AND status IN ('read', 'archived') ORDER BY id LIMIT %s)
