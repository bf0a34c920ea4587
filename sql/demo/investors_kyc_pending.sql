UPDATE public.investors SET kyc_status = 'pending', updated_by = %s WHERE id = %s
