-- Full-text search over the summary by default; over the row values only when asked for.
--
-- The GIN index of 0001 over search_vector(summary, new, old, changes) tokenises every value of
-- the old and new rows and of the diff (~26 lexemes for a 12-column row): measured, it was
-- three quarters of the server's cost of writing a record (107.5 µs per record with it, 23.6
-- without; docs/benchmarks.md) and more than half of the WAL. A GIN over the summary alone
-- costs ~5 µs. The summary names the entity, the actor, the changed columns and the action
-- (cdc/activity.py), which is what the monitor searches for; values (an email, a reference)
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
