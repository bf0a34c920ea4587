-- What `cdc setup` needs that the connected role lacks, one row per missing privilege.
-- %(tables)s: the configured tables as text[] of 'schema.table' (quoted as regclass text).
SELECT 'ownership of table ' || c.relnamespace::regnamespace::text || '.' || quote_ident(c.relname) || ' (to publish it and set REPLICA IDENTITY FULL)'
  FROM unnest(%(tables)s::text[]) AS t(name)
  JOIN pg_class c ON c.oid = to_regclass(t.name)
 WHERE NOT pg_has_role(c.relowner, 'USAGE')
UNION ALL
SELECT CASE WHEN p.oid IS NULL
            THEN 'CREATE on database ' || quote_ident(current_database()) || ' (to create the publication)'
            ELSE 'ownership of publication ' || quote_ident(p.pubname) || ' (to change its tables)'
       END
  FROM (SELECT 1) AS one
  LEFT JOIN pg_publication p ON p.pubname = %(publication)s
 WHERE CASE WHEN p.oid IS NULL
            THEN NOT has_database_privilege(current_database(), 'CREATE')
            ELSE NOT pg_has_role(p.pubowner, 'USAGE')
       END
UNION ALL
SELECT 'REPLICATION (to create the replication slot)'
  FROM pg_roles r
 WHERE r.rolname = current_user AND NOT (r.rolreplication OR r.rolsuper)
   AND NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %(slot)s);
