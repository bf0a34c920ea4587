SELECT id FROM public.tokens WHERE project_id = %s AND status = 'deployed'
ORDER BY id LIMIT 1
