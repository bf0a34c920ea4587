-- May the current role run pg_logical_emit_message's text variant (what the heartbeat and the
-- cutover marker call)? Found by name: PostgreSQL 17 added a fourth parameter (flush).
SELECT coalesce(bool_and(has_function_privilege(p.oid, 'EXECUTE')), false)
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'pg_catalog'::regnamespace
   AND p.proname = 'pg_logical_emit_message'
   AND p.proargtypes[2] = 'text'::regtype
