-- The outcome of each `cdc verify-chain` (cdc/store/chain.py), so that the dashboard can say
-- when the chain was last verified and what was found. Written after the check, in a
-- transaction of its own: a lost row loses nothing of the records (run the check again).
CREATE TABLE {schema}.chain_verifications (
    verified_at    timestamptz NOT NULL DEFAULT now(),
    intact         boolean     NOT NULL,
    checked        bigint      NOT NULL,  -- records recomputed
    since          timestamptz,           -- --since: from the first record at this time
    head_position  bigint      NOT NULL,  -- the chain's head when it was checked
    problem        text                   -- the first break found, when not intact
);
CREATE INDEX ON {schema}.chain_verifications (verified_at);
REVOKE ALL ON {schema}.chain_verifications FROM PUBLIC;
