-- The tables `cdc init` proposes: every ordinary or partitioned (not partition) table outside
-- the system schemas and the activity store's schema, with its primary key and its columns in
-- order. %(exclude_schema)s: the activity store's schema.
SELECT n.nspname AS schema_name,
       c.relname AS table_name,
       (SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum))
          FROM pg_index i
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
         WHERE i.indrelid = c.oid AND i.indisprimary) AS primary_key,
       (SELECT array_agg(a.attname::text ORDER BY a.attnum)
          FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', %(exclude_schema)s)
   AND n.nspname NOT LIKE 'pg\_temp\_%%'
   AND n.nspname NOT LIKE 'pg\_toast\_temp\_%%'
 ORDER BY 1, 2;
