-- Activity records are append-only: nobody changes or removes one row. Old records leave a
-- whole month at a time, by detaching and dropping its partition (DDL, which fires none of
-- these triggers): `cdc partitions --retention-months N`.
--
-- Two layers. The privileges: UPDATE, DELETE and TRUNCATE are revoked from PUBLIC, so a role
-- has them only if someone grants them explicitly. The triggers: they refuse even a role that
-- was granted them (only the owner can disable a trigger). Row triggers on a partitioned table
-- are cloned to every partition, present and future, so UPDATE/DELETE on a partition directly
-- are refused too; a statement trigger is not cloned, so ensure_partitions (0003) puts the
-- TRUNCATE trigger on each partition it creates.
CREATE FUNCTION {schema}.refuse_record_change() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '% on %.% refused: activity records are append-only',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'old records are removed a month at a time: cdc partitions --retention-months N';
END
$fn$;

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {schema}.{records}
    FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_record_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {schema}.{records}
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_record_change();

REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.{records} FROM PUBLIC;
