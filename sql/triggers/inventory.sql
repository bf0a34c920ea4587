-- Every user trigger on the given tables (parallel arrays %(schemas)s, %(tables)s), with its
-- function. Run with search_path = pg_catalog so that pg_get_triggerdef, pg_get_functiondef
-- and regprocedure qualify every name (what a restore must recreate, whatever its search_path).
SELECT n.nspname                                  AS schema_name,
       c.relname                                  AS table_name,
       t.oid                                      AS trigger_oid,
       t.tgname                                   AS trigger_name,
       t.tgtype::integer                          AS trigger_type,
       t.tgenabled::text                          AS enabled,
       ARRAY(SELECT a.attname::text
               FROM unnest(t.tgattr::int2[]) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = t.tgrelid AND a.attnum = k.attnum
              ORDER BY k.ord)                      AS update_columns,
       t.tgconstraint <> 0                        AS is_constraint,
       pg_get_triggerdef(t.oid)                   AS definition,
       obj_description(t.oid, 'pg_trigger')       AS comment,
       p.oid                                      AS function_oid,
       p.oid::regprocedure::text                  AS function_signature,
       pn.nspname                                 AS function_schema,
       p.proname                                  AS function_name,
       pg_get_functiondef(p.oid)                  AS function_definition,
       pg_get_userbyid(p.proowner)::text          AS function_owner,
       p.prosecdef                                AS function_security_definer,
       coalesce(p.proconfig, '{}'::text[])        AS function_config,
       obj_description(p.oid, 'pg_proc')          AS function_comment
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_proc p ON p.oid = t.tgfoid
  JOIN pg_namespace pn ON pn.oid = p.pronamespace
  JOIN unnest(%(schemas)s::text[], %(tables)s::text[]) AS wanted(schema_name, table_name)
    ON wanted.schema_name = n.nspname AND wanted.table_name = c.relname
 WHERE NOT t.tgisinternal
 ORDER BY n.nspname, c.relname, t.tgname
