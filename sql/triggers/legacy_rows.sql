-- Legacy audit rows of the tables %(names)s written in [%(from)s, %(to)s), optionally only
-- those of the transactions whose low 32 bits of txid_current() are in %(xids)s (pgoutput
-- sends that part of the 64-bit id; the epoch is in the high bits). Oldest first.
SELECT mod({txid}, 4294967296)::bigint  AS xid,
       {table_name}::text             AS table_name,
       {schema_name}::text            AS schema_name,
       {operation}::text              AS operation,
       {old}::text                    AS old,
       {new}::text                    AS new,
       {changed_at}                   AS changed_at
  FROM {legacy}
 WHERE {table_name} = ANY(%(names)s)
   AND {changed_at} >= %(from)s
   AND {changed_at} < %(to)s
   AND (%(xids)s::bigint[] IS NULL OR mod({txid}, 4294967296) = ANY(%(xids)s::bigint[]))
 ORDER BY {order}
