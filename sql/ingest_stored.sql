-- Which records of a batch the store already holds, by their key (source, commit LSN, seq,
-- commit time): the stream can hold a record twice (a daemon killed between its PubAcks and
-- its checkpoint, restarted after the duplicate window, publishes the flush again under new
-- stream sequences). Runs while ingest holds its write lock (cdc.service.ingest), so a record
-- another process writes is committed before this looks. Returns the batch's 1-based positions.
SELECT b.i
  FROM unnest(%(source_ids)s::text[], %(commit_lsns)s::pg_lsn[], %(seqs)s::integer[],
              %(occurred_ats)s::timestamptz[])
       WITH ORDINALITY AS b (source_id, commit_lsn, seq, occurred_at, i)
 WHERE EXISTS (SELECT FROM {schema}.{records} r
                WHERE r.commit_lsn = b.commit_lsn AND r.seq = b.seq
                  AND r.occurred_at = b.occurred_at AND r.source_id = b.source_id)
