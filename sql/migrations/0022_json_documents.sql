-- old, new and changes as json, not jsonb: the store keeps the text the daemon sent.
--
-- The daemon builds these documents in jsonb's own text form and hashes exactly that text
-- (cdc.pipeline.values, cdc.store.chain). As jsonb the server parsed every document into its
-- binary form on the way in, only to print the same text again for every reader and for
-- `cdc verify-chain`; as json it checks the syntax and stores the text as it is: the stored
-- text *is* what was hashed. Measured (bench/sink_ab.py --own-stores, docs/benchmarks.md
-- "Issue 17, the lean store"): less server CPU and WAL per record. The readers get the same
-- values (psycopg loads json and jsonb alike; the exports print the same text); a query on a
-- value may cast (`new::jsonb @> ...`); `->` and `->>` work on json as they did.
--
-- Converting: jsonb's cast to json prints jsonb's text (an I/O cast), the text the chain
-- hashed, so existing chains verify unchanged. The table is rewritten, partition by partition,
-- under its ACCESS EXCLUSIVE lock: on a large store run `cdc setup` at a quiet hour (the sink
-- waits for it; nothing is lost).

-- The values' full-text index ([store] search_values) is over a function of jsonb: drop it
-- whatever its name; `cdc setup` creates it again over the json function below, after the
-- migrations, when the setting asks for it.
DO $do$
DECLARE
    idx regclass;
BEGIN
    FOR idx IN
        SELECT i.indexrelid::regclass
          FROM pg_index i
          JOIN pg_class c ON c.oid = i.indexrelid
          JOIN pg_am a ON a.oid = c.relam
         WHERE i.indrelid = $name${schema}.{records}$name$::regclass
           AND a.amname = 'gin'
           AND pg_get_indexdef(i.indexrelid) LIKE '%search_vector(%'
    LOOP
        EXECUTE format('DROP INDEX %s', idx);
    END LOOP;
END
$do$;

ALTER TABLE {schema}.{records}
    ALTER COLUMN old TYPE json USING old::json,
    ALTER COLUMN new TYPE json USING new::json,
    ALTER COLUMN changes TYPE json USING changes::json;

-- The same document as 0001's, over json (json_to_tsvector walks the text in its order, which
-- is jsonb's: the same lexemes at the same positions).
DROP FUNCTION {schema}.search_vector(text, jsonb, jsonb, jsonb);
CREATE FUNCTION {schema}.search_vector(summary text, new json, old json, changes json)
RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN to_tsvector('simple'::regconfig, coalesce(summary, ''))
    || json_to_tsvector('simple'::regconfig, coalesce(new, old, '{{}}'::json),
                        '["string", "numeric"]'::jsonb)
    || json_to_tsvector('simple'::regconfig, coalesce(changes, '{{}}'::json),
                        '["string", "numeric"]'::jsonb);

-- 0011's canonical text in SQL, over the columns' new type (`old::text` of json is the stored
-- text). The verifier does not use it (it trusts no function of this schema); it stays the
-- SQL statement of the chain's definition.
DROP FUNCTION {schema}.chain_text(timestamptz, timestamptz, text, text, text, text, text, text,
                                  text, text, text, text, jsonb, jsonb, jsonb, jsonb, text,
                                  bigint, pg_lsn, integer, bigint);
CREATE FUNCTION {schema}.chain_text(
    occurred_at timestamptz, recorded_at timestamptz, source text, operation text, action text,
    category text, severity text, schema_name text, table_name text, entity_type text,
    entity_id text, actor_id text, context jsonb, old json, new json, changes json,
    summary text, xid bigint, commit_lsn pg_lsn, seq integer, chain_position bigint)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN {schema}.chain_field(to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'))
    || {schema}.chain_field(to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'))
    || {schema}.chain_field(source) || {schema}.chain_field(operation)
    || {schema}.chain_field(action) || {schema}.chain_field(category)
    || {schema}.chain_field(severity) || {schema}.chain_field(schema_name)
    || {schema}.chain_field(table_name) || {schema}.chain_field(entity_type)
    || {schema}.chain_field(entity_id) || {schema}.chain_field(actor_id)
    || {schema}.chain_field(context::text) || {schema}.chain_field(old::text)
    || {schema}.chain_field(new::text) || {schema}.chain_field(changes::text)
    || {schema}.chain_field(summary) || {schema}.chain_field(xid::text)
    || {schema}.chain_field(commit_lsn::text) || {schema}.chain_field(seq::text)
    || {schema}.chain_field(chain_position::text);
