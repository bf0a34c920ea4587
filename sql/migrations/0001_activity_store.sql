-- The activity store: one row per activity (a row change, or an application event), in
-- monthly partitions of occurred_at (0003 creates them; a DEFAULT partition catches the rest).
-- Placeholders {schema}, {records}, {checkpoints}, {records_pkey}... are identifiers composed with
-- psycopg.sql; literal braces are doubled.
CREATE SCHEMA IF NOT EXISTS {schema};

-- Full-text search document of a record: its summary and the values (not the keys) of its row
-- and of its diff, so that a search finds an update by an old value too. 'simple': ids, emails
-- and names are matched as written, in any language, without stemming.
--
-- An expression index on this function rather than a stored generated column: the tsvector is
-- computed once per row either way, but stored it would roughly double the heap width of a
-- record and be written to WAL twice (heap and index); COPY writes the heap, the index gets
-- the vector. Queries call the same function, so the planner matches the index.
CREATE FUNCTION {schema}.search_vector(summary text, new jsonb, old jsonb, changes jsonb)
RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN to_tsvector('simple'::regconfig, coalesce(summary, ''))
    || jsonb_to_tsvector('simple'::regconfig, coalesce(new, old, '{{}}'::jsonb),
                         '["string", "numeric"]'::jsonb)
    || jsonb_to_tsvector('simple'::regconfig, coalesce(changes, '{{}}'::jsonb),
                         '["string", "numeric"]'::jsonb);

CREATE TABLE {schema}.{records} (
    occurred_at  timestamptz NOT NULL,          -- commit time of the source transaction
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    source       text        NOT NULL,          -- 'database', 'application', 'migration', ...
    operation    text        NOT NULL,          -- insert | update | delete | truncate | message
    action       text        NOT NULL,
    category     text        NOT NULL,
    severity     text        NOT NULL,          -- debug < info < notice < warning < error < critical
    schema_name  text,
    table_name   text,
    entity_type  text,
    entity_id    text,                          -- key value; JSON array for composite keys
    actor_id     text,
    context      jsonb,
    old          jsonb,
    new          jsonb,
    changes      jsonb,                         -- updates: {{"col": {{"old": .., "new": ..}}}}
    summary      text,
    xid          bigint,
    commit_lsn   pg_lsn      NOT NULL,
    seq          integer     NOT NULL,          -- order within the source transaction
    -- A unique key of a partitioned table must contain the partition key. One source
    -- transaction has one commit time, so this is exactly as strict as (commit_lsn, seq). In
    -- this order it also serves `cdc activity --follow` (records after a (commit_lsn, seq)).
    CONSTRAINT {records_pkey} PRIMARY KEY (commit_lsn, seq, occurred_at)
) PARTITION BY RANGE (occurred_at);

-- The hot queries (docs/store.md measures what each index costs per written row). Every
-- listing is newest first, so occurred_at ends each key; a btree scans backwards as well.
-- Recent activity, and the time window of any other filter:
CREATE INDEX {records_occurred_at_idx} ON {schema}.{records} (occurred_at);
-- History of one entity:
CREATE INDEX {records_entity_idx} ON {schema}.{records} (entity_type, entity_id, occurred_at);
-- One actor's activity; records without an actor (tables without actor columns) stay out:
CREATE INDEX ON {schema}.{records} (actor_id, occurred_at) WHERE actor_id IS NOT NULL;
-- Category, and category with severity:
CREATE INDEX ON {schema}.{records} (category, severity, occurred_at);
-- Severity alone ("every error of the last day"): the index above needs a category first, and
-- without this one a rare severity is a scan of the whole partition.
CREATE INDEX ON {schema}.{records} (severity, occurred_at);
-- Full-text search (GIN; its pending list absorbs the inserts of a COPY):
CREATE INDEX ON {schema}.{records} USING gin ({schema}.search_vector(summary, new, old, changes));

-- Where the daemon is: written in the same transaction as the records it covers.
CREATE TABLE {schema}.{checkpoints} (
    slot_name    text        PRIMARY KEY,
    commit_lsn   pg_lsn      NOT NULL,   -- LSN of the last recorded source commit
    end_lsn      pg_lsn      NOT NULL,   -- end of that commit record: what was acknowledged
    commit_time  timestamptz,            -- its commit time (for lag in seconds)
    updated_at   timestamptz NOT NULL DEFAULT now()
);
