UPDATE public.investors SET kyc_status = %s, risk_rating = %s, updated_by = %s
WHERE id = %s
