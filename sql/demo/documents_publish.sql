UPDATE public.documents SET status = 'published', updated_by = %s WHERE id = %s
