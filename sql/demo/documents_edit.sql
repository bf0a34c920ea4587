UPDATE public.documents SET title = %s, version = version + 1,
    metadata = metadata || %s, updated_by = %s WHERE id = %s
