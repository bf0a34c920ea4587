-- A key is revoked and replaced (1 update, 1 insert).
\set kid random(1, :api_keys)
BEGIN;
UPDATE public.api_keys SET status = 'revoked', revoked_at = now(), updated_by = 1 WHERE id = :kid RETURNING user_id \gset
INSERT INTO public.api_keys (user_id, name, key_prefix, key_hash, scopes, status, expires_at, created_by, updated_by)
    VALUES (:user_id, 'rotated', 'ak_' || md5(random()::text), md5(random()::text) || md5(random()::text), '{read,write}', 'active', now() + interval '1 year', :user_id, :user_id);
COMMIT;
