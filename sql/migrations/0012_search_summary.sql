-- Full-text search over the summary by default; over the row values only when asked for.
--
-- The GIN index of 0001 over search_vector(summary, new, old, changes) tokenises every value of
-- the old and new rows and of the diff (~26 lexemes for a 12-column row): measured, it was
-- three quarters of the server's cost of writing a record (107.5 µs per record with it, 23.6
-- without; docs/benchmarks.md) and more than half of the WAL. A GIN over the summary alone
-- costs ~5 µs. The summary names the entity, the actor, the changed columns and the action
-- (cdc/pipeline/activity.py), which is what the monitor searches for; values (an email, a reference)
-- are searched with `[store] search_values = true`, for which `cdc setup` creates the index of
-- 0001 again (search_vector stays for it). The readers search whichever document is indexed.
CREATE FUNCTION {schema}.summary_vector(summary text)
RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN to_tsvector('simple'::regconfig, coalesce(summary, ''));

-- The index over the values, whatever its name (0001 let PostgreSQL name it). Dropping the
-- parent's index drops its partitions' indexes with it.
DO $do$
DECLARE
    idx regclass;
BEGIN
    FOR idx IN
        SELECT i.indexrelid::regclass
          FROM pg_index i
          JOIN pg_class c ON c.oid = i.indexrelid
          JOIN pg_am a ON a.oid = c.relam
         WHERE i.indrelid = $name${schema}.{records}$name$::regclass
           AND a.amname = 'gin'
           AND pg_get_indexdef(i.indexrelid) LIKE '%search_vector(%'
    LOOP
        EXECUTE format('DROP INDEX %s', idx);
    END LOOP;
END
$do$;

CREATE INDEX ON {schema}.{records} USING gin ({schema}.summary_vector(summary));

-- Category + severity: the planner's estimate, per partition. A category's rules fix its
-- severities (notifications are all 'debug', say), but PostgreSQL takes the two columns as
-- independent: for `category = 'notification' AND severity = 'info'` it expects a hundred
-- thousand matches where there are none, walks the time index backwards filtering out the
-- whole month, and a monitor's page took seconds (docs/benchmarks.md: p99 2.6 s on 5M records).
-- Multivariate MCV statistics on (category, severity) give it each pair's real frequency, so it
-- takes the (category, severity, occurred_at) index. Statistics objects belong to one table and
-- the planner reads each partition's own: every partition gets one, new ones from
-- create_record_partition (replaced below, as 0003 made it plus the statistics). The readers
-- ask for several severities one ordered scan each (cdc/store/queries.py).
-- The statement that gives one partition its statistics. PostgreSQL 14 and 15 need a name: the
-- table's OID first, so that it stays unique when a long name is cut at 63 bytes and when
-- ensure_partitions replaces the default partition by a new one of the same name.
CREATE FUNCTION {schema}.category_severity_statistics(nsp name, rel name)
RETURNS text
LANGUAGE sql STABLE
RETURN format('CREATE STATISTICS %I.%I (mcv) ON category, severity FROM %I.%I', nsp,
              'category_severity_' || format('%I.%I', nsp, rel)::regclass::oid || '_' || rel,
              nsp, rel);

CREATE OR REPLACE FUNCTION {schema}.create_record_partition(rel text, from_at timestamptz,
                                                            to_at timestamptz)
RETURNS text
LANGUAGE plpgsql
AS $fn$
DECLARE
    parent regclass := $name${schema}.{records}$name$::regclass;
    nsp name := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = parent);
BEGIN
    IF from_at IS NULL THEN
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s DEFAULT', nsp, rel, parent);
    ELSE
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                       nsp, rel, parent, from_at, to_at);
    END IF;
    EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON %I.%I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION %I.refuse_record_change()',
                   nsp, rel, nsp);
    EXECUTE {schema}.category_severity_statistics(nsp, rel);
    RETURN format('%I.%I', nsp, rel);
END
$fn$;

DO $do$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT partition_schema, partition_name FROM {schema}.record_partitions() LOOP
        EXECUTE {schema}.category_severity_statistics(p.partition_schema, p.partition_name);
        EXECUTE format('ANALYZE %I.%I', p.partition_schema, p.partition_name);
    END LOOP;
END
$do$;
