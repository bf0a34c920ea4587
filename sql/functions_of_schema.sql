-- The functions of a schema as "name(type, type)" (the spelling of provision.CONTEXT_FUNCTIONS)
-- with their oid. Reads only the catalog: needs no privilege on the schema.
SELECT p.proname || '('
       || coalesce(pg_catalog.array_to_string(p.proargtypes::oid[]::regtype[], ', '), '')
       || ')',
       p.oid
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = %s
