-- Run by `cdc setup` on the SOURCE database (the messages must enter its WAL); {schema} is
-- the activity schema name. Re-running replaces the functions with the same definitions.
CREATE SCHEMA IF NOT EXISTS {schema};

-- What the application side calls; one cheap WAL record each, no insert on its path.
--
-- set_context(jsonb): the transaction's context (actor, request id, ...); applies to every
--   change of the transaction, also those made before the call.
-- log(...): an application activity that is not a row change (a login, an export); recorded
--   only if the transaction commits. log_now(...): the same, recorded even if it rolls back
--   (a failed approval attempt).
-- pre_request(): for PostgREST/Supabase `db-pre-request`: the verified JWT claims as context.
--
-- All are SECURITY DEFINER and executable by no one until `cdc setup` grants them to the
-- roles in [context] allowed_roles. Any role that can run pg_logical_emit_message can forge a
-- context, so setup also revokes that from PUBLIC when it may (sql/emit_message_revoke.sql).
--
-- On PostgreSQL 17 and later log_now passes flush => true: its message is flushed to WAL at
-- once, so it survives a crash even when its transaction rolls back (no commit record flushes
-- it then).
CREATE OR REPLACE FUNCTION {schema}.set_context(context jsonb) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.pg_logical_emit_message(true, 'cdc.context', context::text);
    SELECT NULL::void;
$$;

CREATE OR REPLACE FUNCTION {schema}.log(
    action text,
    entity_type text DEFAULT NULL,
    entity_id text DEFAULT NULL,
    details jsonb DEFAULT '{{}}',
    category text DEFAULT 'application',
    severity text DEFAULT 'info',
    actor_id text DEFAULT NULL,
    summary text DEFAULT NULL
) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.pg_logical_emit_message(true, 'cdc.activity', pg_catalog.jsonb_build_object(
        'action', action, 'entity_type', entity_type, 'entity_id', entity_id,
        'details', details, 'category', category, 'severity', severity,
        'actor_id', actor_id, 'summary', summary)::text);
    SELECT NULL::void;
$$;

CREATE OR REPLACE FUNCTION {schema}.log_now(
    action text,
    entity_type text DEFAULT NULL,
    entity_id text DEFAULT NULL,
    details jsonb DEFAULT '{{}}',
    category text DEFAULT 'application',
    severity text DEFAULT 'info',
    actor_id text DEFAULT NULL,
    summary text DEFAULT NULL
) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.pg_logical_emit_message(false, 'cdc.activity', pg_catalog.jsonb_build_object(
        'action', action, 'entity_type', entity_type, 'entity_id', entity_id,
        'details', details, 'category', category, 'severity', severity,
        'actor_id', actor_id, 'summary', summary,
        'emitted_at', pg_catalog.clock_timestamp())::text{flush});
    SELECT NULL::void;
$$;

CREATE OR REPLACE FUNCTION {schema}.pre_request() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    claims jsonb := nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb;
    headers jsonb := nullif(pg_catalog.current_setting('request.headers', true), '')::jsonb;
BEGIN
    IF claims IS NULL THEN
        RETURN;  -- anonymous request: no context
    END IF;
    PERFORM pg_catalog.pg_logical_emit_message(true, 'cdc.context', pg_catalog.jsonb_build_object(
        'actor_id', claims ->> 'sub', 'role', claims ->> 'role',
        'request_id', headers ->> 'x-request-id', 'source', 'postgrest')::text);
END
$$;

REVOKE ALL ON FUNCTION {schema}.set_context(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION {schema}.log(text, text, text, jsonb, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION {schema}.log_now(text, text, text, jsonb, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION {schema}.pre_request() FROM PUBLIC;
