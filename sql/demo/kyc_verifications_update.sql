UPDATE public.kyc_verifications SET status = %s, reviewed_by = %s,
    reviewed_at = now(), expires_at = now() + interval '1 year', result = %s,
    updated_by = %s WHERE id = %s AND status IN ('pending', 'in_review') RETURNING id
