-- A draft document is withdrawn (0 or 1 delete).
DELETE FROM public.documents
 WHERE id = (SELECT id FROM public.documents WHERE status = 'draft' AND id >= gen_random_uuid() ORDER BY id LIMIT 1);
