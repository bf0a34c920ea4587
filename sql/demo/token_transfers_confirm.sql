UPDATE public.token_transfers SET status = 'confirmed', block_number = %s
WHERE id = %s
