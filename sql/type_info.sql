-- What the daemon needs to render values of non-built-in types as to_jsonb does.
SELECT t.oid::bigint,
       t.typtype::text,
       CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE 0 END::bigint AS element_oid,
       t.typbasetype::bigint,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum)
                   FROM pg_attribute a
                  WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped),
                '{}') AS field_names,
       coalesce((SELECT array_agg(a.atttypid::bigint ORDER BY a.attnum)
                   FROM pg_attribute a
                  WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped),
                '{}') AS field_types
  FROM pg_type t
 WHERE t.oid = ANY(%(oids)s::oid[])
