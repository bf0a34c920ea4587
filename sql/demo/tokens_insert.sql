INSERT INTO public.tokens (project_id, symbol, name, standard, chain,
    contract_address, total_supply, status, created_by, updated_by)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
