UPDATE public.token_transfers SET status = 'submitted', tx_hash = %s WHERE id = %s
