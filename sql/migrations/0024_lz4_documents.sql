-- The documents of a record compressed with lz4 rather than pglz, when the server has lz4.
--
-- A row over ~2 kB is compressed before it is stored (TOAST), its largest values first: for
-- the platform's records that is the row documents of wide tables (a document's 35-40 kB body,
-- twice in an update: old and new) and pglz spent most of the server's time writing them
-- (9,116 records of `cdc demo`, re-inserted: 1.25-1.42 s with pglz, 0.33-0.51 s with lz4;
-- 20% more bytes). Reading decompresses whatever method a value was written with, so the
-- records written before keep pglz and read as they did; nothing is rewritten. Values under
-- the threshold are not compressed either way.
--
-- The method is a property of each column of each partition: set on the parent, new
-- partitions inherit it (create_record_partition, ensure_partitions' new default); the
-- existing ones are set one by one. A server built without lz4 refuses the method: the store
-- then keeps pglz, as before.
DO $do$
DECLARE
    p record;
BEGIN
    EXECUTE $sql$ALTER TABLE {schema}.{records}
        ALTER COLUMN context SET COMPRESSION lz4, ALTER COLUMN old SET COMPRESSION lz4,
        ALTER COLUMN new SET COMPRESSION lz4, ALTER COLUMN changes SET COMPRESSION lz4$sql$;
    FOR p IN SELECT partition_schema, partition_name FROM {schema}.record_partitions() LOOP
        EXECUTE format('ALTER TABLE %I.%I ALTER COLUMN context SET COMPRESSION lz4, '
                       'ALTER COLUMN old SET COMPRESSION lz4, ALTER COLUMN new SET COMPRESSION '
                       'lz4, ALTER COLUMN changes SET COMPRESSION lz4',
                       p.partition_schema, p.partition_name);
    END LOOP;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this server has no lz4: the records'' documents stay compressed with pglz';
END
$do$;
