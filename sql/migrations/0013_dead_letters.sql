-- Changes the sink refused, parked on purpose ([sink] on_refused = "dead_letter"; the default,
-- "stop", parks nothing: the daemon stops and names the change). A parked change is NOT in the
-- activity records: the daemon logs an error and counts it (activity_cdc_errors_total, kind
-- dead_letter), `cdc check` warns while any is here, and docs/operations.md says how to fix
-- and move one into the records. The record is kept as the daemon built it (JSON of its columns,
-- as text: the value the sink refused may not be valid where it was going).
CREATE TABLE {schema}.dead_letters (
    slot_name    text        NOT NULL,
    commit_lsn   pg_lsn      NOT NULL,
    seq          integer     NOT NULL,
    schema_name  text,
    table_name   text,
    entity_id    text,
    operation    text        NOT NULL,
    error        text        NOT NULL,
    sqlstate     text,
    record       text        NOT NULL,
    parked_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (commit_lsn, seq)
);
REVOKE ALL ON {schema}.dead_letters FROM PUBLIC;
