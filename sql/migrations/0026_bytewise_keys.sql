-- rebuilds: the four btrees over their text columns again (~4 s per million records)
-- The store's key columns compare byte-wise (COLLATE "C") whatever the database's locale.
-- A database made in the host's locale (Debian's default cluster: C.UTF-8 or en_US.UTF-8)
-- compares text with the C library's strcoll: every insert into the records' btrees over
-- (entity_type, entity_id, ...), (actor_id, ...), (category, severity, ...) and (severity, ...),
-- and every key of the sink's rollup upsert, paid for it. Readers only compare these columns
-- for equality, which is byte equality under any deterministic collation: nothing read
-- changes. Measured (python -m bench.collation_ab --locale ..., a cluster made in each locale):
-- the sink's server CPU per record x0.91 in an en_US.UTF-8 database, x0.97 in a C.UTF-8 one
-- (docs/benchmarks.md).
--
-- The same columns in the records and in the three rollup tables, so that a statement
-- comparing them across tables meets one collation. In a database whose locale is already C
-- nothing compares differently. This builds the records' four btrees over these columns again
-- on every partition, and the rollups' keys, with the tables locked meanwhile
-- (docs/operations.md: "Upgrading"; 4.0 s for a million records on 2 cores). The view daily_activity reads the per-hour rollups'
-- columns: it is made again around the change, for the roles that could read it.
DO $migrate$
DECLARE
    readers text[] := ARRAY(
        SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
          FROM pg_class AS c, aclexplode(c.relacl) AS a
         WHERE c.oid = '{schema}.daily_activity'::regclass
           AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner);
    reader text;
BEGIN
    DROP VIEW {schema}.daily_activity;

    ALTER TABLE {schema}.{records}
        ALTER COLUMN source      TYPE text COLLATE "C",
        ALTER COLUMN operation   TYPE text COLLATE "C",
        ALTER COLUMN category    TYPE text COLLATE "C",
        ALTER COLUMN severity    TYPE text COLLATE "C",
        ALTER COLUMN schema_name TYPE text COLLATE "C",
        ALTER COLUMN table_name  TYPE text COLLATE "C",
        ALTER COLUMN entity_type TYPE text COLLATE "C",
        ALTER COLUMN entity_id   TYPE text COLLATE "C",
        ALTER COLUMN actor_id    TYPE text COLLATE "C";

    ALTER TABLE {schema}.activity_per_minute
        ALTER COLUMN source      TYPE text COLLATE "C",
        ALTER COLUMN category    TYPE text COLLATE "C",
        ALTER COLUMN severity    TYPE text COLLATE "C",
        ALTER COLUMN schema_name TYPE text COLLATE "C",
        ALTER COLUMN table_name  TYPE text COLLATE "C",
        ALTER COLUMN operation   TYPE text COLLATE "C";

    ALTER TABLE {schema}.activity_per_hour
        ALTER COLUMN source      TYPE text COLLATE "C",
        ALTER COLUMN category    TYPE text COLLATE "C",
        ALTER COLUMN severity    TYPE text COLLATE "C",
        ALTER COLUMN schema_name TYPE text COLLATE "C",
        ALTER COLUMN table_name  TYPE text COLLATE "C",
        ALTER COLUMN operation   TYPE text COLLATE "C";

    ALTER TABLE {schema}.activity_per_day
        ALTER COLUMN source      TYPE text COLLATE "C",
        ALTER COLUMN category    TYPE text COLLATE "C",
        ALTER COLUMN severity    TYPE text COLLATE "C",
        ALTER COLUMN schema_name TYPE text COLLATE "C",
        ALTER COLUMN table_name  TYPE text COLLATE "C",
        ALTER COLUMN operation   TYPE text COLLATE "C";

    CREATE VIEW {schema}.daily_activity AS
    SELECT (bucket AT TIME ZONE 'UTC')::date AS day,
           source, category, severity,
           nullif(schema_name, '') AS schema_name,
           nullif(table_name, '') AS table_name,
           operation,
           sum(n)::bigint AS n
      FROM {schema}.activity_per_hour
     GROUP BY 1, 2, 3, 4, 5, 6, 7;
    FOREACH reader IN ARRAY readers LOOP
        EXECUTE format('GRANT SELECT ON %s TO %s', '{schema}.daily_activity'::regclass, reader);
    END LOOP;
END
$migrate$;
