UPDATE public.subscriptions SET status = 'allocated', updated_by = %s
WHERE id = %s AND status = 'approved' RETURNING investor_id, token_id, token_amount
