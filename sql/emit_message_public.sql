-- Whether PUBLIC may still EXECUTE any signature of pg_logical_emit_message (cdc setup revokes
-- them as a superuser). Looked up by name: PostgreSQL 17 added a fourth parameter (flush).
SELECT coalesce(bool_or(has_function_privilege('public', p.oid, 'EXECUTE')), false)
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'pg_catalog'::regnamespace
   AND p.proname = 'pg_logical_emit_message'
