-- The slot and the walsender streaming from it: is CDC capturing, and did the daemon answer
-- lately? reply_time is the last status update the daemon sent (NULL without privilege to
-- see pg_stat_replication's details, or when nobody streams).
SELECT s.slot_type::text,
       s.plugin::text,
       s.database::text,
       s.wal_status,
       s.active_pid,
       s.confirmed_flush_lsn::text,
       pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.confirmed_flush_lsn)::bigint
           AS unconfirmed_bytes,
       extract(epoch FROM now() - r.reply_time)::float8 AS seconds_since_reply
  FROM pg_replication_slots s
  LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
 WHERE s.slot_name = %(slot)s
