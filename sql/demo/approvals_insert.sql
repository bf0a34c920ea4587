INSERT INTO public.approvals (entity_type, entity_id, action, status, requested_by,
    decided_by, decided_at, created_by, updated_by)
VALUES (%s, %s, %s, %s, %s, %s, CASE WHEN %s <> 'pending' THEN now() END, %s, %s)
