-- Where each table stands in the move from legacy audit triggers to CDC. Written by the daemon
-- in the same transaction as the cutover marker's record, so it moves with the checkpoint:
-- 'shadow' (triggers still record it; CDC records are kept apart with source 'shadow'),
-- 'cdc' (CDC records it; source 'database').
CREATE TABLE IF NOT EXISTS {schema}.capture_modes (
    schema_name       text        NOT NULL,
    table_name        text        NOT NULL,
    mode              text        NOT NULL CHECK (mode IN ('shadow', 'cdc')),
    since_commit_lsn  pg_lsn      NOT NULL,
    changed_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, table_name)
);
