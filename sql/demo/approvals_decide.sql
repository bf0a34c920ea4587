UPDATE public.approvals SET status = %s, decided_by = %s, decided_at = now(),
    updated_by = %s WHERE entity_type = %s AND entity_id = %s AND status = 'pending'
