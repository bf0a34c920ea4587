-- Move the staged batch into the records, each with its hash chained to the one before (see
-- migrations/0011_hash_chain.sql), and move the chain's head; one statement.
--
-- The head row is read FOR UPDATE: a second writer of the same records table waits here until
-- this transaction ends, then chains after it, so the chain never forks. recorded_at is set
-- here (not by the column default) because it is part of the hashed text.
WITH head AS (
    SELECT hash, position FROM {schema}.{records_chain_head} WHERE one FOR UPDATE
), numbered AS (
    SELECT s.*, now() AS recorded_at,
           (SELECT position FROM head) + row_number() OVER (ORDER BY s.commit_lsn, s.seq)
               AS chain_position
      FROM pg_temp.{staging} s
), linked AS (
    SELECT s.*,
           {schema}.hash_chain(
               {schema}.chain_text(s.occurred_at, now(), s.source, s.operation, s.action,
                                   s.category, s.severity, s.schema_name, s.table_name,
                                   s.entity_type, s.entity_id, s.actor_id, s.context, s.old,
                                   s.new, s.changes, s.summary, s.xid, s.commit_lsn, s.seq,
                                   s.chain_position),
               (SELECT hash FROM head))
               OVER (ORDER BY s.chain_position ROWS UNBOUNDED PRECEDING) AS hash
      FROM numbered s
), chained AS MATERIALIZED (
    SELECT linked.*,
           coalesce(lag(hash) OVER (ORDER BY chain_position), (SELECT hash FROM head))
               AS prev_hash
      FROM linked
), inserted AS (
    INSERT INTO {schema}.{records} (occurred_at, recorded_at, source, operation, action,
                                    category, severity, schema_name, table_name, entity_type,
                                    entity_id, actor_id, context, old, new, changes, summary,
                                    xid, commit_lsn, seq, chain_position, prev_hash, hash)
    SELECT occurred_at, recorded_at, source, operation, action, category, severity,
           schema_name, table_name, entity_type, entity_id, actor_id, context, old, new,
           changes, summary, xid, commit_lsn, seq, chain_position, prev_hash, hash
      FROM chained
)
UPDATE {schema}.{records_chain_head} AS h
   SET hash = last.hash, position = last.chain_position, commit_lsn = last.commit_lsn,
       seq = last.seq, updated_at = now()
  FROM (SELECT hash, chain_position, commit_lsn, seq FROM chained
         ORDER BY chain_position DESC LIMIT 1)
       AS last
 WHERE h.one
