-- The next chunk of the legacy audit log for `cdc triggers import-history`: rows after
-- %(after)s in the order column, of the configured tables %(names)s, in [%(since)s, %(until)s)
-- (NULL: unbounded), primary operations only (the derived STATUS_CHANGE/AMOUNT_CHANGE rows
-- repeat an UPDATE row). Oldest first.
SELECT {order}::bigint                     AS id,
       mod({txid}, 4294967296)::bigint     AS xid,
       {table_name}::text                  AS table_name,
       {schema_name}::text                 AS schema_name,
       lower({operation}::text)            AS operation,
       {old}::text                         AS old,
       {new}::text                         AS new,
       {changed_at}                        AS changed_at
  FROM {legacy}
 WHERE {order} > %(after)s
   AND {table_name} = ANY(%(names)s)
   AND lower({operation}::text) IN ('insert', 'update', 'delete')
   AND (%(since)s::timestamptz IS NULL OR {changed_at} >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL OR {changed_at} < %(until)s::timestamptz)
 ORDER BY {order}
 LIMIT %(limit)s
