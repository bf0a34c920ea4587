INSERT INTO public.documents (organization_id, project_id, investor_id, doc_type,
    title, file_name, mime_type, size_bytes, sha256, content, status,
    created_by, updated_by)
VALUES (%s, %s, %s, %s, %s, %s, 'text/plain', %s, %s, %s, %s, %s, %s)
RETURNING id
