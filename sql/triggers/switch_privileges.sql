-- May the current role switch this table? ALTER TABLE ... ENABLE/DISABLE TRIGGER
-- needs its owner (or a member of the owning role); the marker needs EXECUTE on
-- pg_logical_emit_message's text variant, which setup revokes from PUBLIC. Looked up by name:
-- its signature gained a fourth parameter (flush) in PostgreSQL 17.
SELECT current_user::text,
       pg_has_role(c.relowner, 'MEMBER'),
       (SELECT coalesce(bool_and(has_function_privilege(p.oid, 'EXECUTE')), false)
          FROM pg_proc p
         WHERE p.pronamespace = 'pg_catalog'::regnamespace
           AND p.proname = 'pg_logical_emit_message'
           AND p.proargtypes[2] = 'text'::regtype)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relname = %s
