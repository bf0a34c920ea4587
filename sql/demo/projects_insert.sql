INSERT INTO public.projects (organization_id, name, slug, project_type, status,
    target_raise, min_investment, currency, opens_at, closes_at, metadata,
    created_by, updated_by)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s,
    CASE WHEN %s IN ('fundraising', 'closed') THEN now() END,
    CASE WHEN %s IN ('fundraising', 'closed') THEN now() + interval '90 days' END,
    %s, %s, %s) RETURNING id
