-- Counts for dashboards, per UTC minute and per UTC hour, by source, category, severity,
-- table and operation. The sink adds each flush's counts in the transaction that writes its
-- records (cdc/pipeline/rollups.py), so the counts commit or roll back with the records: exactly once.
-- Records without a table (application events) have '' as schema_name and table_name, so
-- that every column of the key is NOT NULL.
CREATE TABLE {schema}.activity_per_minute (
    bucket       timestamptz NOT NULL,     -- start of the UTC minute
    source       text        NOT NULL,
    category     text        NOT NULL,
    severity     text        NOT NULL,
    schema_name  text        NOT NULL,
    table_name   text        NOT NULL,
    operation    text        NOT NULL,
    n            bigint      NOT NULL,
    PRIMARY KEY (bucket, source, category, severity, schema_name, table_name, operation)
);

CREATE TABLE {schema}.activity_per_hour (
    LIKE {schema}.activity_per_minute,      -- bucket: start of the UTC hour
    PRIMARY KEY (bucket, source, category, severity, schema_name, table_name, operation)
);

-- Activity per UTC day, from the hourly counts (cheap at any size of the records table).
CREATE VIEW {schema}.daily_activity AS
SELECT (bucket AT TIME ZONE 'UTC')::date AS day,
       source, category, severity,
       nullif(schema_name, '') AS schema_name,
       nullif(table_name, '') AS table_name,
       operation,
       sum(n)::bigint AS n
  FROM {schema}.activity_per_hour
 GROUP BY 1, 2, 3, 4, 5, 6, 7;
