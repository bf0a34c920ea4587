-- The end of a flush in the sink transaction (cdc/pipeline/sink.py), after its COPY, in ONE
-- statement (one round trip, one executor run) where there were three:
--   * the flush's counts added to the per-minute and per-hour rollups (cdc/pipeline/rollups.py):
--     each array parameter holds one column of the counts; the keys within an array are
--     distinct, as ON CONFLICT DO UPDATE requires; empty arrays add nothing;
--   * the head, in the move_head slot below: when the flush commits and records were chained
--     in its transaction, ", head AS (UPDATE ...)" moving the chain's head to the last of them
--     (the head row is locked FOR UPDATE since that transaction's first COPY), or nothing;
--   * the checkpoint, in the store_checkpoint slot: when the flush has one, ", checkpoint AS
--     (the statement of checkpoint_upsert.sql)", or nothing (a chunk of a larger source
--     transaction; a role that never stores a checkpoint, like cdc ingest's, needs no
--     privilege on the table).
-- Data-modifying CTEs all run to completion, referenced or not, on the statement's snapshot;
-- they touch different tables.
WITH per_minute AS (
    INSERT INTO {schema}.activity_per_minute AS r
           (bucket, source, category, severity, schema_name, table_name, operation, n)
    SELECT * FROM unnest(%(m_bucket)s::timestamptz[], %(m_source)s::text[],
                         %(m_category)s::text[], %(m_severity)s::text[],
                         %(m_schema_name)s::text[], %(m_table_name)s::text[],
                         %(m_operation)s::text[], %(m_n)s::bigint[])
    ON CONFLICT (bucket, source, category, severity, schema_name, table_name, operation)
    DO UPDATE SET n = r.n + excluded.n
){move_head}{store_checkpoint}
INSERT INTO {schema}.activity_per_hour AS r
       (bucket, source, category, severity, schema_name, table_name, operation, n)
SELECT * FROM unnest(%(h_bucket)s::timestamptz[], %(h_source)s::text[],
                     %(h_category)s::text[], %(h_severity)s::text[],
                     %(h_schema_name)s::text[], %(h_table_name)s::text[],
                     %(h_operation)s::text[], %(h_n)s::bigint[])
ON CONFLICT (bucket, source, category, severity, schema_name, table_name, operation)
DO UPDATE SET n = r.n + excluded.n
