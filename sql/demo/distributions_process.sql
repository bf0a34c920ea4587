UPDATE public.distributions SET status = 'processing', updated_by = %s
WHERE id = %s AND status = 'scheduled' RETURNING id
