UPDATE public.subscriptions SET status = %s,
    approved_at = CASE WHEN %s = 'approved' THEN now() END, updated_by = %s
WHERE id = %s AND status = 'pending' RETURNING id
