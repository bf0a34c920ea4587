INSERT INTO public.user_roles (user_id, role, organization_id, created_by)
VALUES (%s, %s, %s, %s) ON CONFLICT (user_id, role) DO NOTHING
