UPDATE public.token_transfers SET status = 'rejected',
    failure_reason = 'insufficient balance' WHERE id = %s
