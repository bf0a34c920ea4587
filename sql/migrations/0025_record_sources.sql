-- rebuilds: the primary key again
-- Which source a record came from, in the store's key. A commit LSN is a position in ONE
-- cluster's WAL: records of two source clusters written into one store (cdc ingest: many
-- sources, one stream, one store) can share (commit_lsn, seq, occurred_at). The source is
-- '<database system identifier>:<slot>', what already names a source where records could meet:
-- the JetStream message id (<system id>:<slot>:<commit_lsn>:<seq>) and the daemon's bucket
-- checkpoint. It is derived, not configured, so two configs cannot claim one by mistake; a
-- physical standby keeps the system identifier, and a failover slot its name.
--
-- The writer names its source in its session (set_config('activity_cdc.source_id', ...):
-- cdc.pipeline.sink.Sink, and cdc ingest per source of a batch), so the COPY lines carry no
-- extra field. Records written before this migration, and by a writer that names no source,
-- have ''. The constant default first: adding the column rewrites nothing.
ALTER TABLE {schema}.{records} ADD COLUMN source_id text NOT NULL DEFAULT '';
ALTER TABLE {schema}.{records} ALTER COLUMN source_id
    SET DEFAULT coalesce(current_setting('activity_cdc.source_id', true), '');

-- The key gets the source last: (commit_lsn, seq) first still serves `cdc activity --follow`.
-- This builds the key's index again on every partition (the records are locked meanwhile).
ALTER TABLE {schema}.{records} DROP CONSTRAINT {records_pkey},
    ADD CONSTRAINT {records_pkey} PRIMARY KEY (commit_lsn, seq, occurred_at, source_id);
