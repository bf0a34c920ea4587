UPDATE public.wallets SET status = 'whitelisted', whitelisted_at = now(),
    updated_by = %s WHERE id = %s
