-- Rows the legacy audit triggers wrote for one table since %(since)s: row changes
-- (INSERT, UPDATE, DELETE, TRUNCATE) and derived rows (any other operation, e.g. the demo's
-- STATUS_CHANGE and AMOUNT_CHANGE). {schema_match} is TRUE when the log has no schema column.
SELECT count(*) FILTER (WHERE upper({operation}) IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')),
       count(*) FILTER (WHERE upper({operation}) NOT IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'))
  FROM {legacy}
 WHERE {table_name} = %(table)s
   AND {schema_match}
   AND {changed_at} >= %(since)s
