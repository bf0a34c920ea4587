UPDATE public.investors SET metadata = metadata || %s, risk_rating = %s,
    updated_by = %s WHERE id = %s
