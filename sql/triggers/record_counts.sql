-- Activity records of one table's row changes since %(since)s, shadow and live.
SELECT count(*)
  FROM {records}
 WHERE schema_name = %(schema)s
   AND table_name = %(table)s
   AND source IN ('shadow', 'database')
   AND occurred_at >= %(since)s
