-- Counts per UTC day, by the same keys as the per-hour rollups: what `cdc stats` and the
-- dashboard read for windows longer than a week (30 days: 30 rows per key instead of 720).
-- The sink does not write them (nothing added to its transaction): `cdc partitions` folds
-- each closed day from the per-hour rollups (cdc/control/daily_rollups.py), and folds a day
-- again when its per-hour counts changed since (records recorded late: a backlog, a backfill).
-- Readers take the days before the last folded one from here and everything after it from
-- the per-hour rollups, so no day is counted twice and a store never folded reads as before.
CREATE TABLE {schema}.activity_per_day (
    LIKE {schema}.activity_per_minute,      -- bucket: start of the UTC day
    PRIMARY KEY (bucket, source, category, severity, schema_name, table_name, operation)
);

-- Whoever reads the per-hour rollups (the role of `cdc serve`, made before this table
-- existed) may read these too.
DO $grant$
DECLARE
    reader regrole;
BEGIN
    FOR reader IN
        SELECT DISTINCT a.grantee::regrole
          FROM pg_class AS c, aclexplode(c.relacl) AS a
         WHERE c.oid = '{schema}.activity_per_hour'::regclass
           AND a.privilege_type = 'SELECT' AND a.grantee <> 0 AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO %s', '{schema}.activity_per_day'::regclass, reader);
    END LOOP;
END
$grant$;
