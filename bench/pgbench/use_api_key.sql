-- Every API call touches api_keys.last_used_at (an ignored column: a change, no activity).
\set kid random(1, :api_keys)
SELECT user_id, scopes, status FROM public.api_keys WHERE id = :kid;
UPDATE public.api_keys SET last_used_at = now() WHERE id = :kid;
