-- What the trigger migration keeps in the source database, next to the triggers it switches
-- (created on first use; not a migration of the activity store, which may live elsewhere).
-- Placeholders {schema}, {backups}, {switches} are identifiers; literal braces are doubled.
CREATE SCHEMA IF NOT EXISTS {schema};

-- A backup of the audit triggers and their functions: the SQL that recreates them exactly, its
-- SHA-256, and the catalog facts it was made from (to check it against the live catalog).
CREATE TABLE IF NOT EXISTS {schema}.{backups} (
    id           bigserial   PRIMARY KEY,
    taken_at     timestamptz NOT NULL DEFAULT now(),
    taken_by     text        NOT NULL DEFAULT current_user,
    checksum     text        NOT NULL,            -- sha256 hex of sql
    sql          text        NOT NULL,
    triggers     jsonb       NOT NULL,            -- [{{schema, table, name, definition, ...}}]
    verified_at  timestamptz                      -- read back and checked against the catalog
);

-- Every switch of a table between audit triggers and CDC, written in the same transaction as
-- the ALTER TABLE ... TRIGGER statements and the cdc.cutover marker.
CREATE TABLE IF NOT EXISTS {schema}.{switches} (
    id           bigserial   PRIMARY KEY,
    switched_at  timestamptz NOT NULL DEFAULT now(),
    switched_by  text        NOT NULL DEFAULT current_user,
    schema_name  text        NOT NULL,
    table_name   text        NOT NULL,
    mode         text        NOT NULL CHECK (mode IN ('cdc', 'triggers', 'dropped')),
    phase        integer,
    triggers     text[]      NOT NULL,
    backup_id    bigint,
    xid          bigint      NOT NULL DEFAULT txid_current(),
    marker_lsn   pg_lsn,                          -- LSN of the cdc.cutover message
    marker       jsonb
);
CREATE INDEX IF NOT EXISTS {switches_table_idx} ON {schema}.{switches} (schema_name, table_name, id);
