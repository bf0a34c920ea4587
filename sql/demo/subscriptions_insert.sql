INSERT INTO public.subscriptions (investor_id, project_id, token_id, amount,
    currency, token_amount, status, payment_reference, approved_at,
    created_by, updated_by)
VALUES (%s, %s, %s, %s, 'USD', %s, %s, %s,
    CASE WHEN %s IN ('approved', 'allocated') THEN now() END, %s, %s) RETURNING id
