-- Rows first..last of a synthetic activity store of `total` records, spread evenly over the
-- `window_s` seconds before now (row number order = time order = commit order, three records
-- per source transaction), shaped like what `cdc run` writes for the demo platform: the
-- table, entity type, category and severities come from examples/platform.toml (the session
-- table bench_record_rules, one row per percent of records, see bench/sections/queries.py);
-- entity ids and actors are skewed (a few are very busy: entity 1 of a table has ~0.4% of its
-- records, actor 1 ~0.7% of all), rows carry a name, a unique reference and an amount, the
-- rows of people (users, investors, their KYC and notifications) their user's email, updates
-- carry a status diff, summaries read like the daemon's (entity, actor, changed columns,
-- action).
-- Parameters: first, last, total, window_s.
INSERT INTO activity.records
       (occurred_at, recorded_at, source, operation, action, category, severity, schema_name,
        table_name, entity_type, entity_id, actor_id, context, old, new, changes, summary, xid,
        commit_lsn, seq)
SELECT t.occurred_at,
       t.occurred_at + interval '120 milliseconds',
       'database',
       t.operation,
       r.entity_type || '.' || t.operation,
       r.category,
       CASE t.operation WHEN 'insert' THEN r.severity_insert
                        WHEN 'update' THEN r.severity_update
                        ELSE r.severity_delete END,
       'public',
       r.table_name,
       r.entity_type,
       t.entity_id::text,
       CASE WHEN r.has_actor THEN t.actor_id::text END,
       NULL,
       CASE WHEN t.operation <> 'insert' THEN t.row || e.email || jsonb_build_object('status', t.old_status) END,
       CASE WHEN t.operation <> 'delete' THEN t.row || e.email || jsonb_build_object('status', t.new_status) END,
       CASE WHEN t.operation = 'update'
            THEN jsonb_build_object('status', jsonb_build_object('old', t.old_status, 'new', t.new_status)) END,
       r.entity_type || ' ' || t.entity_id || ' '
           || CASE t.operation WHEN 'insert' THEN 'created' WHEN 'update' THEN 'updated'
                               ELSE 'deleted' END
           || CASE WHEN r.has_actor THEN ' by ' || t.actor_id ELSE '' END
           || CASE WHEN t.operation = 'update' THEN ': status' ELSE '' END
           || ' (' || r.entity_type || '.' || t.operation || ')',
       1000 + t.g / 3,
       '0/1000000'::pg_lsn + (t.g / 3) * 4096,
       t.g %% 3
  FROM (SELECT g,
               now() - make_interval(secs => %(window_s)s::float8 * (%(total)s::bigint - g) / %(total)s::bigint) AS occurred_at,
               (ARRAY['insert', 'insert', 'insert', 'insert', 'insert', 'insert', 'update',
                      'update', 'update', 'update', 'update', 'update', 'update', 'delete'])
                   [1 + floor(random() * 14)::int] AS operation,
               1 + floor(50000 * random() ^ 2)::int AS entity_id,
               1 + floor(20000 * random() ^ 2)::int AS actor_id,
               (ARRAY['pending', 'approved', 'active', 'rejected', 'settled'])[1 + floor(random() * 5)::int] AS old_status,
               (ARRAY['approved', 'active', 'settled', 'read', 'confirmed'])[1 + floor(random() * 5)::int] AS new_status,
               floor(random() * 100)::int AS rule_slot,
               jsonb_build_object(
                   'name', (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Linus', 'Radia', 'Ken'])[1 + floor(random() * 8)::int]
                           || ' ' || (ARRAY['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Perlman', 'Thompson', 'Wirth'])[1 + floor(random() * 9)::int],
                   'reference', 'ref-' || substr(md5(g::text), 1, 12),
                   'amount', round((random() * 100000)::numeric, 2),
                   'currency', 'USD',
                   'updated_at', now()) AS row
          FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g) AS t
  JOIN bench_record_rules AS r ON r.slot = t.rule_slot
 CROSS JOIN LATERAL (
       SELECT CASE WHEN r.table_name IN ('users', 'investors', 'kyc_verifications', 'notifications')
                   THEN jsonb_build_object('email', 'user' || t.entity_id || '@example.com')
                   ELSE '{}'::jsonb END AS email) AS e;
