UPDATE public.projects SET status = 'fundraising', opens_at = now(),
    closes_at = now() + interval '90 days', updated_by = %s WHERE id = %s
