INSERT INTO public.compliance_checks (investor_id, wallet_id, subscription_id,
    token_transfer_id, check_type, provider, status, score, details, checked_at,
    created_by, updated_by)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,
    CASE WHEN %s <> 'pending' THEN now() END, %s, %s)
