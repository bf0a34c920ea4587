UPDATE public.distributions SET status = %s,
    paid_at = CASE WHEN %s THEN now() END, tx_hash = %s WHERE id = %s
