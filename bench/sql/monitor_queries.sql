-- The monitor's hot queries over activity.records, newest first, one page of 50 records, every
-- filter a plain comparison on a bare column (the shape cdc/store/queries.py builds, so the
-- planner can use the store's indexes and prune partitions). `-- name:` starts a query;
-- {columns} is the record's columns, {search} the full-text document expression.

-- name: recent_activity
SELECT {columns} FROM activity.records
 ORDER BY occurred_at DESC, commit_lsn DESC, seq DESC LIMIT 50;

-- name: entity_history
SELECT {columns} FROM activity.records
 WHERE entity_type = %(entity_type)s AND entity_id = %(entity_id)s
 ORDER BY occurred_at DESC, commit_lsn DESC, seq DESC LIMIT 50;

-- name: actor_activity
SELECT {columns} FROM activity.records
 WHERE actor_id = %(actor_id)s
 ORDER BY occurred_at DESC, commit_lsn DESC, seq DESC LIMIT 50;

-- name: category_severity
SELECT {columns} FROM activity.records
 WHERE category = %(category)s AND severity = ANY(%(severities)s)
 ORDER BY occurred_at DESC, commit_lsn DESC, seq DESC LIMIT 50;

-- name: category_severity_lateral
-- Not the monitor's query: the same result, one ordered index scan per severity, merged. A
-- btree scan with "severity = ANY(...)" cannot return rows in occurred_at order (PostgreSQL
-- before 17), so the query above sorts every matching record; this shape does not.
SELECT {columns}
  FROM unnest(%(severities)s::text[]) AS wanted(level)
 CROSS JOIN LATERAL (
       SELECT * FROM activity.records
        WHERE category = %(category)s AND severity = wanted.level
        ORDER BY occurred_at DESC, commit_lsn DESC, seq DESC LIMIT 50) AS r
 ORDER BY occurred_at DESC, commit_lsn DESC, seq DESC LIMIT 50;

-- name: full_text
SELECT {columns} FROM activity.records
 WHERE {search} @@ websearch_to_tsquery('simple', %(search)s)
 ORDER BY occurred_at DESC, commit_lsn DESC, seq DESC LIMIT 50;

-- name: full_text_common_word
SELECT {columns} FROM activity.records
 WHERE {search} @@ websearch_to_tsquery('simple', %(common_word)s)
 ORDER BY occurred_at DESC, commit_lsn DESC, seq DESC LIMIT 50;
