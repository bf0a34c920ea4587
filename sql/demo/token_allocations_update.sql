UPDATE public.token_allocations SET amount = amount - %s, updated_by = %s
WHERE id = %s AND amount >= %s RETURNING id
