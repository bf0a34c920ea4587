-- EXECUTE on pg_logical_emit_message's text variant for {role} (the heartbeat's call), found
-- by name: PostgreSQL 17 added a fourth parameter (flush), so its signature is
-- (boolean, text, text) on 15 and 16 and (boolean, text, text, boolean) from 17 on.
DO $$
DECLARE
    emit regprocedure;
BEGIN
    FOR emit IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'pg_catalog'::regnamespace
           AND p.proname = 'pg_logical_emit_message'
           AND p.proargtypes[2] = 'text'::regtype
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', emit, {role});
    END LOOP;
END
$$
