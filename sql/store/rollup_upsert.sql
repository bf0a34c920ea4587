-- Add one flush's counts (cdc/pipeline/rollups.py) to the per-minute and per-hour rollups, in the sink
-- transaction that writes its records. Each array parameter holds one column of the counts;
-- the keys within an array are distinct, as ON CONFLICT DO UPDATE requires.
WITH per_minute AS (
    INSERT INTO {schema}.activity_per_minute AS r
           (bucket, source, category, severity, schema_name, table_name, operation, n)
    SELECT * FROM unnest(%(m_bucket)s::timestamptz[], %(m_source)s::text[],
                         %(m_category)s::text[], %(m_severity)s::text[],
                         %(m_schema_name)s::text[], %(m_table_name)s::text[],
                         %(m_operation)s::text[], %(m_n)s::bigint[])
    ON CONFLICT (bucket, source, category, severity, schema_name, table_name, operation)
    DO UPDATE SET n = r.n + excluded.n
)
INSERT INTO {schema}.activity_per_hour AS r
       (bucket, source, category, severity, schema_name, table_name, operation, n)
SELECT * FROM unnest(%(h_bucket)s::timestamptz[], %(h_source)s::text[],
                     %(h_category)s::text[], %(h_severity)s::text[],
                     %(h_schema_name)s::text[], %(h_table_name)s::text[],
                     %(h_operation)s::text[], %(h_n)s::bigint[])
ON CONFLICT (bucket, source, category, severity, schema_name, table_name, operation)
DO UPDATE SET n = r.n + excluded.n
