-- Sign-up: a user, their investor role, an investor profile and a welcome notice (4 inserts).
BEGIN;
INSERT INTO public.users (email, full_name, password_hash, status, locale, metadata)
    VALUES ('u-' || gen_random_uuid() || '@example.com', 'New User', '$argon2id$' || md5(random()::text), 'active', 'en', '{"signup_source": "web"}')
    RETURNING id AS uid \gset
INSERT INTO public.user_roles (user_id, role, created_by) VALUES (:uid, 'investor', :uid);
INSERT INTO public.investors (user_id, legal_name, country, tax_id, date_of_birth, created_by, updated_by)
    VALUES (:uid, 'New Investor', 'US', 'US' || (random() * 1e9)::bigint, '1980-01-15', :uid, :uid);
INSERT INTO public.notifications (user_id, kind, title, body)
    VALUES (:uid, 'system', 'Welcome to the platform', 'Complete your profile to start investing.');
COMMIT;
