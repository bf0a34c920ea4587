-- The type of each column of a table (cdc/pipeline/sink.py: whether the sink can send its records
-- in binary COPY, whose fields are each column's binary form, and which documents are jsonb).
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0 AND NOT a.attisdropped
