-- An admin grants a viewer role and re-grants an analyst role (composite key: upsert, delete, insert).
\set uid random(11, :users)
BEGIN;
INSERT INTO public.user_roles (user_id, role, created_by) VALUES (:uid, 'viewer', 1)
    ON CONFLICT (user_id, role) DO UPDATE SET expires_at = now() + interval '90 days';
DELETE FROM public.user_roles WHERE user_id = :uid AND role = 'analyst';
INSERT INTO public.user_roles (user_id, role, created_by, expires_at) VALUES (:uid, 'analyst', 1, now() + interval '30 days');
COMMIT;
