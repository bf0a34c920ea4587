-- The end of a flush in the sink transaction (cdc/pipeline/sink.py), after its COPY: ONE
-- statement (one round trip, one executor run) where there were three.
--   * The flush's counts added to the per-minute and per-hour rollups (cdc/pipeline/rollups.py):
--     each array parameter holds one column of the counts; the keys within an array are
--     distinct, as ON CONFLICT DO UPDATE requires. Empty arrays add nothing.
--   * {move_head}: the chain's head moved to the last record chained in this transaction (the
--     head row is locked FOR UPDATE since that transaction's first COPY), or nothing.
--   * The checkpoint: the position of the last source commit covered by this sink transaction,
--     when %(checkpoint)s (a chunk of a larger source transaction has none). Only forward: a
--     checkpoint never moves back (a replay that tried would be a bug).
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
), per_hour AS (
    INSERT INTO {schema}.activity_per_hour AS r
           (bucket, source, category, severity, schema_name, table_name, operation, n)
    SELECT * FROM unnest(%(h_bucket)s::timestamptz[], %(h_source)s::text[],
                         %(h_category)s::text[], %(h_severity)s::text[],
                         %(h_schema_name)s::text[], %(h_table_name)s::text[],
                         %(h_operation)s::text[], %(h_n)s::bigint[])
    ON CONFLICT (bucket, source, category, severity, schema_name, table_name, operation)
    DO UPDATE SET n = r.n + excluded.n
){move_head}
INSERT INTO {schema}.{checkpoints} AS c (slot_name, commit_lsn, end_lsn, commit_time, updated_at)
SELECT %(slot)s::text, %(commit_lsn)s::pg_lsn, %(end_lsn)s::pg_lsn,
       %(commit_time)s::timestamptz, now()
 WHERE %(checkpoint)s::boolean
ON CONFLICT (slot_name) DO UPDATE
   SET commit_lsn = EXCLUDED.commit_lsn,
       end_lsn = EXCLUDED.end_lsn,
       commit_time = EXCLUDED.commit_time,
       updated_at = now()
 WHERE c.end_lsn < EXCLUDED.end_lsn
