DELETE FROM public.documents WHERE id = %s AND status = 'draft'
