UPDATE public.token_transfers SET status = 'failed',
    failure_reason = 'gas estimation failed' WHERE id = %s
