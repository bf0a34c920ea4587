INSERT INTO public.kyc_verifications (investor_id, provider, provider_reference,
    level, document_type, document_number, status, result, reviewed_by, reviewed_at,
    expires_at, created_by, updated_by)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END,
    CASE WHEN %s THEN now() + interval '1 year' END, %s, %s) RETURNING id
