UPDATE public.redemptions SET status = 'rejected',
    reason = 'insufficient balance' WHERE id = %s
