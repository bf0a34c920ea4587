-- Transactions CDC already recorded (shadow phase, or after the cutover) among those of a chunk
-- of the legacy log: (schema, table, xid) of records whose commit follows the legacy row's
-- transaction start within a day (xids are 32 bits on the stream: the window tells apart two
-- transactions with one xid, epochs apart). Uses the occurred_at index.
SELECT DISTINCT schema_name, table_name, xid
  FROM {schema}.{records}
 WHERE occurred_at >= %(since)s
   AND occurred_at < %(until)s::timestamptz + interval '1 day'
   AND source IN ('shadow', 'database')
   AND xid = ANY(%(xids)s::bigint[])
