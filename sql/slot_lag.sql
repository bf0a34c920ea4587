-- Lag of one logical slot, measured against the server's WAL insert position (the current
-- WAL flush position can be behind the last commit).
SELECT s.slot_name,
       s.active,
       s.active_pid,
       s.wal_status,
       s.safe_wal_size,
       s.restart_lsn::text,
       s.confirmed_flush_lsn::text,
       pg_current_wal_insert_lsn()::text AS current_lsn,
       pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.restart_lsn)::bigint AS retained_bytes,
       pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.confirmed_flush_lsn)::bigint
           AS unconfirmed_bytes,
       -- names this source's checkpoint in a JetStream bucket
       (SELECT system_identifier::text FROM pg_control_system()) AS system_id
  FROM pg_replication_slots s
 WHERE s.slot_name = %(slot)s AND s.slot_type = 'logical'
