-- May the current role switch this table? ALTER TABLE ... ENABLE/DISABLE TRIGGER
-- needs its owner (or a member of the owning role); the marker needs EXECUTE on
-- pg_logical_emit_message, which setup revokes from PUBLIC.
SELECT current_user::text,
       pg_has_role(c.relowner, 'MEMBER'),
       has_function_privilege('pg_catalog.pg_logical_emit_message(boolean, text, text)',
                              'EXECUTE')
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relname = %s
