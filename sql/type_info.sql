-- What the daemon needs to render values of non-built-in types as to_jsonb does (cdc.values).
-- json_cast follows to_jsonb's rule (json_categorize_type): a cast to json (not jsonb) made by
-- a function; hstore's own (hstore_to_json, both from the hstore extension) is rendered by the
-- daemon, any other by the server. An array is what PostgreSQL calls a true array (typelem and
-- the array subscript handler), not a fixed-length type such as point; its elements are
-- separated by the element type's delimiter (PostGIS's is ':').
SELECT t.oid::bigint,
       t.typtype::text,
       CASE WHEN t.typelem <> 0 AND t.typsubscript = 'pg_catalog.array_subscript_handler'::regproc
            THEN t.typelem ELSE 0 END::bigint AS element_oid,
       t.typbasetype::bigint,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum)
                   FROM pg_attribute a
                  WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped),
                '{}') AS field_names,
       coalesce((SELECT array_agg(a.atttypid::bigint ORDER BY a.attnum)
                   FROM pg_attribute a
                  WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped),
                '{}') AS field_types,
       coalesce((SELECT CASE WHEN p.proname = 'hstore_to_json'
                              AND EXISTS (SELECT FROM pg_depend d
                                            JOIN pg_extension e ON e.oid = d.refobjid
                                           WHERE d.classid = 'pg_proc'::regclass
                                             AND d.objid = p.oid
                                             AND d.refclassid = 'pg_extension'::regclass
                                             AND d.deptype = 'e'
                                             AND e.extname = 'hstore')
                             THEN 'hstore' ELSE 'server' END
                   FROM pg_cast c
                   JOIN pg_proc p ON p.oid = c.castfunc
                  WHERE c.castsource = t.oid
                    AND c.casttarget = 'pg_catalog.json'::regtype
                    AND c.castmethod = 'f'),
                '') AS json_cast,
       n.nspname::text AS schema_name,
       t.typname::text AS type_name,
       coalesce((SELECT e.typdelim::text FROM pg_type e WHERE e.oid = t.typelem), ',')
           AS delimiter
  FROM pg_type t
  JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.oid = ANY(%(oids)s::oid[])
