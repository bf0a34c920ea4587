INSERT INTO public.distributions (token_id, investor_id, wallet_id, allocation_id,
    distribution_type, amount, currency, record_date, scheduled_for,
    created_by, updated_by)
VALUES (%s, %s, %s, %s, %s, %s, 'USD', current_date, now() + interval '1 day',
    %s, %s) RETURNING id
