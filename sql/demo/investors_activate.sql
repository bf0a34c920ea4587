UPDATE public.investors SET kyc_status = 'approved',
    accreditation_status = 'accredited', risk_rating = 'low', updated_by = %s
WHERE id = %s
