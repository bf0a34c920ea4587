INSERT INTO public.token_allocations (token_id, investor_id, wallet_id,
    subscription_id, amount, status, lockup_until, created_by, updated_by)
VALUES (%s, %s, %s, %s, %s, %s,
    CASE WHEN %s = 'locked' THEN now() + interval '180 days' END, %s, %s)
RETURNING id
