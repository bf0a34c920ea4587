-- Park one refused change (cdc/pipeline/sink.py, [sink] on_refused = "dead_letter"). A replay after a
-- crash parks the same change again: keep the first.
INSERT INTO {schema}.dead_letters (slot_name, commit_lsn, seq, schema_name, table_name,
                                   entity_id, operation, error, sqlstate, record)
VALUES (%(slot)s, %(commit_lsn)s, %(seq)s, %(schema_name)s, %(table_name)s, %(entity_id)s,
        %(operation)s, %(error)s, %(sqlstate)s, %(record)s)
ON CONFLICT (commit_lsn, seq) DO NOTHING
