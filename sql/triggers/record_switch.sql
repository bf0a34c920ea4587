-- One switch of a table (cdc | triggers | dropped), in the transaction that makes it.
INSERT INTO {schema}.{switches}
       (schema_name, table_name, mode, phase, triggers, backup_id, marker_lsn, marker)
VALUES (%(schema_name)s, %(table_name)s, %(mode)s, %(phase)s, %(triggers)s, %(backup_id)s,
        %(marker_lsn)s::pg_lsn, %(marker)s::jsonb)
RETURNING id, xid, switched_at
