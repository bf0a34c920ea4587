-- Where an import of the legacy audit log stands (cdc triggers import-history): the last legacy
-- id imported, committed with the chunk that reached it, and the counts so far.
INSERT INTO {schema}.legacy_imports AS i
       (import_key, last_id, rows_read, records, skipped_shadow)
VALUES (%(key)s, %(last)s, %(read)s, %(records)s, %(skipped)s)
    ON CONFLICT (import_key) DO UPDATE
   SET last_id = EXCLUDED.last_id,
       rows_read = i.rows_read + EXCLUDED.rows_read,
       records = i.records + EXCLUDED.records,
       skipped_shadow = i.skipped_shadow + EXCLUDED.skipped_shadow,
       updated_at = now()
