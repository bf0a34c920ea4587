-- Every request touches users.last_seen_at (an ignored column: a change, but no activity).
\set uid random(1, :users)
UPDATE public.users SET last_seen_at = now() WHERE id = :uid;
