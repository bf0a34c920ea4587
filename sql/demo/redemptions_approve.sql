UPDATE public.redemptions SET status = 'approved', updated_by = %s
WHERE id = %s AND status = 'requested' RETURNING id
