UPDATE public.redemptions SET status = 'settled', settled_at = now()
WHERE id = %s
