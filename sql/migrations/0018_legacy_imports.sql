-- `cdc triggers import-history` (docs/migration.md): how far the legacy audit log has been
-- imported, written in the transaction of each chunk of records it covers, so that a killed
-- import resumes after the last committed chunk and a finished one imports nothing again.
CREATE TABLE {schema}.legacy_imports (
    import_key     text        PRIMARY KEY,   -- the legacy table and the --since/--until range
    last_id        bigint      NOT NULL,      -- legacy rows up to this id (order column) are done
    rows_read      bigint      NOT NULL DEFAULT 0,
    records        bigint      NOT NULL DEFAULT 0,
    skipped_shadow bigint      NOT NULL DEFAULT 0,  -- already recorded by CDC in the shadow phase
    updated_at     timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON {schema}.legacy_imports FROM PUBLIC;
