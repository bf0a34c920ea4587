-- Run by `cdc setup` as a superuser on the SOURCE database: any role that can run
-- pg_logical_emit_message can forge a transaction context or an application event, so PUBLIC
-- loses EXECUTE on every signature of it. Looked up by name: PostgreSQL 17 added a fourth
-- parameter (flush), so (boolean, text, text) does not exist there.
DO $$
DECLARE
    emit regprocedure;
BEGIN
    FOR emit IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'pg_catalog'::regnamespace
           AND p.proname = 'pg_logical_emit_message'
    LOOP
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', emit);
    END LOOP;
END
$$
