-- Move the consumer's floor forward (never back) and forget the sequences at or below the
-- lowest floor of the stream's consumers: JetStream delivers none of them again.
WITH moved AS (
    INSERT INTO {schema}.ingest_positions AS p (stream, consumer, floor_seq)
    VALUES (%(stream)s, %(consumer)s, %(floor_seq)s)
    ON CONFLICT (stream, consumer) DO UPDATE
       SET floor_seq = greatest(p.floor_seq, EXCLUDED.floor_seq), updated_at = now()
    RETURNING floor_seq
)
DELETE FROM {schema}.ingested
 WHERE stream = %(stream)s
   AND stream_seq <= least((SELECT floor_seq FROM moved),
                           coalesce((SELECT min(floor_seq) FROM {schema}.ingest_positions
                                      WHERE stream = %(stream)s
                                        AND consumer <> %(consumer)s), 'Infinity'::numeric))
