-- `cdc ingest` (docs/scale-out.md): records read from a JetStream stream, written here in the
-- same transaction as the stream sequences they came from. Several ingest processes share one
-- durable consumer; a message JetStream delivers again (its ack was lost, or its process died
-- after the commit) finds its sequence here and is acknowledged without being written twice.
CREATE TABLE {schema}.ingested (
    stream      text   NOT NULL,
    stream_seq  bigint NOT NULL,
    PRIMARY KEY (stream, stream_seq)
);
REVOKE ALL ON {schema}.ingested FROM PUBLIC;

-- The consumer's ack floor as ingest last saw it: every message at or below it is written and
-- acknowledged, so its rows in `ingested` are removed and a sequence at or below it is skipped.
CREATE TABLE {schema}.ingest_positions (
    stream      text        NOT NULL,
    consumer    text        NOT NULL,
    floor_seq   bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, consumer)
);
REVOKE ALL ON {schema}.ingest_positions FROM PUBLIC;
