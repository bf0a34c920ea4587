-- Store the position of the last source commit covered by this sink transaction.
-- Only forward: a checkpoint never moves back (a replay that tried would be a bug).
INSERT INTO {schema}.{checkpoints} AS c (slot_name, commit_lsn, end_lsn, commit_time, updated_at)
VALUES (%(slot)s, %(commit_lsn)s, %(end_lsn)s, %(commit_time)s, now())
ON CONFLICT (slot_name) DO UPDATE
   SET commit_lsn = EXCLUDED.commit_lsn,
       end_lsn = EXCLUDED.end_lsn,
       commit_time = EXCLUDED.commit_time,
       updated_at = now()
 WHERE c.end_lsn < EXCLUDED.end_lsn
