-- How many legacy rows `cdc triggers import-history` has left (for its progress and ETA).
SELECT count(*)
  FROM {legacy}
 WHERE {order} > %(after)s
   AND {table_name} = ANY(%(names)s)
   AND lower({operation}::text) IN ('insert', 'update', 'delete')
   AND (%(since)s::timestamptz IS NULL OR {changed_at} >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL OR {changed_at} < %(until)s::timestamptz)
