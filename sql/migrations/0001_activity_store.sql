-- The activity store: one row per activity (a row change, or an application event).
-- Placeholders {schema}, {records}, {checkpoints} are identifiers composed with psycopg.sql;
-- literal braces are doubled.
CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {schema}.{records} (
    occurred_at  timestamptz NOT NULL,          -- commit time of the source transaction
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    source       text        NOT NULL,          -- 'database', 'application', 'migration', ...
    operation    text        NOT NULL,          -- insert | update | delete | truncate | message
    action       text        NOT NULL,
    category     text        NOT NULL,
    severity     text        NOT NULL,
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
    CONSTRAINT {records_pkey} PRIMARY KEY (commit_lsn, seq)
);

CREATE INDEX IF NOT EXISTS {records_occurred_at_idx} ON {schema}.{records} (occurred_at);
CREATE INDEX IF NOT EXISTS {records_entity_idx} ON {schema}.{records} (entity_type, entity_id);

-- Where the daemon is: written in the same transaction as the records it covers.
CREATE TABLE IF NOT EXISTS {schema}.{checkpoints} (
    slot_name    text        PRIMARY KEY,
    commit_lsn   pg_lsn      NOT NULL,   -- LSN of the last recorded source commit
    end_lsn      pg_lsn      NOT NULL,   -- end of that commit record: what was acknowledged
    commit_time  timestamptz,            -- its commit time (for lag in seconds)
    updated_at   timestamptz NOT NULL DEFAULT now()
);
