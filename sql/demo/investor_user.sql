SELECT user_id FROM public.investors WHERE id = %s
