INSERT INTO public.investors (user_id, investor_type, legal_name, country, tax_id,
    date_of_birth, created_by, updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
RETURNING id
