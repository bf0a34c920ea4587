-- The sink's staging table (hash chain on): a batch is COPYed here, then chained and moved
-- into the records by sql/chain_insert.sql. Temporary: private to the sink's session, never
-- WAL-logged, gone with the session. NOT NULL as in the records table, so that COPY refuses a
-- bad value at its line (the error then names the change).
CREATE TEMPORARY TABLE IF NOT EXISTS {staging} (
    occurred_at  timestamptz NOT NULL,
    source       text        NOT NULL,
    operation    text        NOT NULL,
    action       text        NOT NULL,
    category     text        NOT NULL,
    severity     text        NOT NULL,
    schema_name  text,
    table_name   text,
    entity_type  text,
    entity_id    text,
    actor_id     text,
    context      jsonb,
    old          jsonb,
    new          jsonb,
    changes      jsonb,
    summary      text,
    xid          bigint,
    commit_lsn   pg_lsn      NOT NULL,
    seq          integer     NOT NULL
)
