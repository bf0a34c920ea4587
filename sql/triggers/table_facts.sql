-- What verify needs to know of each table (parallel arrays %(schemas)s, %(tables)s): its
-- primary key columns in key order, its generated columns (pgoutput does not send them), and
-- its replica identity (with FULL, the old row of an update or delete is complete).
SELECT w.schema_name,
       w.table_name,
       ARRAY(SELECT a.attname::text
               FROM pg_index i
              CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = c.oid AND i.indisprimary
              ORDER BY k.ord)                              AS key_columns,
       ARRAY(SELECT a.attname::text
               FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attgenerated <> ''
              ORDER BY a.attnum)                           AS generated_columns,
       c.relreplident::text                                AS replica_identity
  FROM unnest(%(schemas)s::text[], %(tables)s::text[]) AS w(schema_name, table_name)
  JOIN pg_namespace n ON n.nspname = w.schema_name
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.table_name
