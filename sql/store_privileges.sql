-- What `cdc setup` needs on the sink that the connected role lacks: the activity store's schema
-- (its migrations create and alter tables there), or CREATE on the database to create it.
SELECT CASE WHEN n.oid IS NULL
            THEN 'CREATE on database ' || quote_ident(current_database()) || ' (to create schema ' || quote_ident(%(schema)s) || ')'
            ELSE 'ownership of schema ' || quote_ident(n.nspname) || ' (to migrate the activity store)'
       END
  FROM (SELECT 1) AS one
  LEFT JOIN pg_namespace n ON n.nspname = %(schema)s
 WHERE CASE WHEN n.oid IS NULL
            THEN NOT has_database_privilege(current_database(), 'CREATE')
            ELSE NOT pg_has_role(n.nspowner, 'USAGE')
       END;
