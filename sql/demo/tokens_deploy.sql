UPDATE public.tokens SET status = 'deployed', contract_address = %s,
    updated_by = %s WHERE project_id = %s AND status = 'draft'
