-- Claim the stream sequences of a batch for this transaction (ascending, so two ingest
-- processes that both hold a redelivered message wait on each other in one order and never
-- deadlock). A sequence already written (a row here, or at or below the consumer's floor) is
-- not returned: its record is in the store.
INSERT INTO {schema}.ingested AS i (stream, stream_seq)
SELECT %(stream)s, s
  FROM unnest(%(seqs)s::bigint[]) AS s
 WHERE s > coalesce((SELECT max(floor_seq) FROM {schema}.ingest_positions
                      WHERE stream = %(stream)s), 0)
 ORDER BY s
    ON CONFLICT (stream, stream_seq) DO NOTHING
RETURNING stream_seq
