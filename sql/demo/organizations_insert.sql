INSERT INTO public.organizations (name, legal_name, org_type, country,
    registration_number, status, created_by, updated_by)
VALUES (%s, %s, %s, %s, %s, 'active', %s, %s) RETURNING id
