-- Values of one type rendered exactly as to_jsonb renders them: through the type's cast to json
-- (cdc.values, values only the server can render). The daemon sends their text output, as the
-- stream gave it, and gets back jsonb's text, by ordinal; {part} tells the types of a batch apart
-- (one statement joins them with UNION ALL: one round trip).
SELECT {part}::int, u.n::int, to_jsonb(u.v::{type})::text
  FROM unnest({texts}::text[]) WITH ORDINALITY AS u(v, n)
