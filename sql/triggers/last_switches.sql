-- The latest switch of every table that has one.
SELECT DISTINCT ON (schema_name, table_name)
       schema_name, table_name, mode, phase, triggers, backup_id, xid, marker_lsn::text,
       switched_at, extract(epoch FROM now() - switched_at)::float8 AS age_seconds
  FROM {schema}.{switches}
 ORDER BY schema_name, table_name, id DESC
