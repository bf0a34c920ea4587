-- The columns of one table for `cdc backfill`, in order, with their type OIDs, and the table's
-- OID (the relation id its rows are mapped under, as the stream names it).
SELECT c.oid::bigint,
       array_agg(a.attname::text ORDER BY a.attnum),
       array_agg(a.atttypid::bigint ORDER BY a.attnum)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND c.relkind IN ('r', 'p')
 GROUP BY c.oid;
