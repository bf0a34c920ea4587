-- Tamper evidence: every record carries the hash of its content chained to the hash of the
-- record before it, in commit order ((commit_lsn, seq): the order the daemon writes them).
--
--     hash = sha256(prev_hash || convert_to(chain_text(record), 'UTF8'))
--
-- A record changed after it was written no longer matches its hash; a record removed or slipped
-- in out of band breaks the link of the record after it; records removed from the end no longer
-- end at the head the daemon keeps in {records_chain_head}. `cdc verify-chain` recomputes it all
-- from the stored values, in Python, from their text as PostgreSQL's own output functions
-- render it (jsonb's canonical text, timestamps in UTC), so it trusts no function of this file.
--
-- The hash is computed here, in the database, at insert: only the stored jsonb has one canonical
-- text (key order, spacing, numbers as stored), and it exists once the row is parsed. The sink
-- COPYs a batch into a temporary staging table and moves it with one INSERT ... SELECT that
-- chains it with the window aggregate below (sql/chain_insert.sql).
-- chain_position numbers the chained records 1, 2, 3 ... without gaps (it is hashed too): a
-- gap is a deletion, and a broken link without a gap is a record changed and hashed again.
ALTER TABLE {schema}.{records}
    ADD COLUMN chain_position bigint, ADD COLUMN prev_hash bytea, ADD COLUMN hash bytea;

-- One field of the canonical text: its length in UTF-8 bytes, a colon, the text; '-' for NULL.
-- Length prefixes make the encoding unambiguous whatever the values hold.
CREATE FUNCTION {schema}.chain_field(value text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce(octet_length(convert_to(value, 'UTF8'))::text || ':' || value, '-');

-- The canonical text of a record: every column but prev_hash and hash, in table order.
CREATE FUNCTION {schema}.chain_text(
    occurred_at timestamptz, recorded_at timestamptz, source text, operation text, action text,
    category text, severity text, schema_name text, table_name text, entity_type text,
    entity_id text, actor_id text, context jsonb, old jsonb, new jsonb, changes jsonb,
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

-- One link: the hash of the previous link (the seed for the first row of a batch) and the text.
CREATE FUNCTION {schema}.chain_step(state bytea, canonical text, seed bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN sha256(coalesce(state, seed) || convert_to(canonical, 'UTF8'));

-- As a window aggregate over (ORDER BY commit_lsn, seq) it yields each row's chained hash in one
-- pass (the running state moves forward one row at a time).
CREATE AGGREGATE {schema}.hash_chain(text, bytea) (SFUNC = {schema}.chain_step, STYPE = bytea);

-- The head of the chain: the last record written. Updated in the records' transaction; the row
-- lock also makes two writers of one records table take turns instead of forking the chain.
CREATE TABLE {schema}.{records_chain_head} (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    hash        bytea       NOT NULL,
    position    bigint      NOT NULL DEFAULT 0,  -- chain_position of the last record
    commit_lsn  pg_lsn,
    seq         integer,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- The genesis: 32 zero bytes.
INSERT INTO {schema}.{records_chain_head} (hash) VALUES (decode(repeat('00', 32), 'hex'));
-- Only the daemon's role moves the head (cdc setup --print-role-sql grants it SELECT, UPDATE).
REVOKE ALL ON {schema}.{records_chain_head} FROM PUBLIC;
