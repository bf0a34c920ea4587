UPDATE public.tokens SET total_supply = total_supply + %s, updated_by = %s
WHERE id = %s
