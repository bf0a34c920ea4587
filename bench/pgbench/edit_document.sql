-- A document is published (1 update; its large content is unchanged, the old row carries it).
UPDATE public.documents SET status = 'published', version = version + 1, updated_by = 1
 WHERE id = (SELECT id FROM public.documents WHERE id >= gen_random_uuid() ORDER BY id LIMIT 1);
