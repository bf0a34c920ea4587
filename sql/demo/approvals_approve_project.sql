UPDATE public.approvals SET status = 'approved', decided_by = %s,
    decided_at = now(), updated_by = %s WHERE id = %s AND status = 'pending'
RETURNING id
