UPDATE public.investors SET kyc_status = 'pending' WHERE id = %s
