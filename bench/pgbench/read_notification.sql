-- A user reads a notification (1 update).
\set nid random(1, :notifications)
UPDATE public.notifications SET status = 'read', read_at = now()
 WHERE id = (SELECT id FROM public.notifications WHERE id >= :nid ORDER BY id LIMIT 1);
