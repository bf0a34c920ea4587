-- A user clears notifications (up to 2 deletes).
\set nid random(1, :notifications)
DELETE FROM public.notifications
 WHERE id IN (SELECT id FROM public.notifications WHERE id >= :nid ORDER BY id LIMIT 2);
