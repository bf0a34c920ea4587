UPDATE public.compliance_checks SET status = %s, checked_at = now(), score = %s,
    updated_by = %s WHERE id = %s
