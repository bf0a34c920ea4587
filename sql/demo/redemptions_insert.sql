INSERT INTO public.redemptions (token_id, investor_id, allocation_id, wallet_id,
    token_amount, payout_amount, currency, created_by, updated_by)
VALUES (%s, %s, %s, %s, %s, %s, 'USD', %s, %s) RETURNING id
