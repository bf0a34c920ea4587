-- Activity records of row changes (shadow and live) of the tables (%(schemas)s, %(tables)s)
-- committed in [%(from)s, %(to)s) and before %(before_lsn)s, in stream order.
SELECT xid, schema_name, table_name, operation, old::text, new::text, context::text,
       occurred_at, commit_lsn::text, seq
  FROM {records}
 WHERE source IN ('shadow', 'database')
   AND operation IN ('insert', 'update', 'delete', 'truncate')
   AND occurred_at >= %(from)s
   AND occurred_at < %(to)s
   AND commit_lsn < %(before_lsn)s::pg_lsn
   AND (schema_name, table_name) IN
       (SELECT * FROM unnest(%(schemas)s::text[], %(tables)s::text[]))
 ORDER BY commit_lsn, seq
