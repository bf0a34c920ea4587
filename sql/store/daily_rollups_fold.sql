-- The per-day rollups of some UTC days (days: their starts), summed from the per-hour ones;
-- their old rows are deleted first, in the same transaction.
INSERT INTO {schema}.activity_per_day
       (bucket, source, category, severity, schema_name, table_name, operation, n)
SELECT date_bin('1 day', bucket, '2000-01-01 00:00+00'),
       source, category, severity, schema_name, table_name, operation, sum(n)
  FROM {schema}.activity_per_hour
 WHERE bucket >= %(first)s AND bucket < %(end)s
   AND date_bin('1 day', bucket, '2000-01-01 00:00+00') = ANY(%(days)s)
 GROUP BY 1, 2, 3, 4, 5, 6, 7
