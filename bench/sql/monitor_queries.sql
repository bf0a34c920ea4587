-- The monitor's hot queries over activity.records, newest first, one page of 50 records, every
-- filter a plain comparison on a bare column (the shape cdc/store/queries.py builds, so the
-- planner can use the store's indexes and prune partitions). `-- name:` starts a query;
-- {columns} is the record's columns, {search} the full-text document expression, {reader} the
-- statement cdc/store/queries.py builds for the parameters ({severity_reader}: for their
-- severities alone).

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
-- What `cdc activity --category C --min-severity S` runs: the reader's own statement
-- (cdc/store/queries.py page_query), built for each parameter set: one severity is
-- `severity = $1`; several are one ordered index scan each, UNION ALL, merged.
{reader}

-- name: severity
-- What `cdc activity --min-severity S` (or `--severity S`) runs without a category: the
-- reader's own statement, one ordered scan of (severity, occurred_at) per severity, merged.
{severity_reader}

-- name: category_severity_any
-- Not the monitor's query since 0012: the earlier shape, one scan with "severity = ANY(...)".
-- A btree scan with = ANY cannot return rows in occurred_at order (PostgreSQL before 17), so
-- it sorts every match or walks the time index filtering.
SELECT {columns} FROM activity.records
 WHERE category = %(category)s AND severity = ANY(%(severities)s)
 ORDER BY occurred_at DESC, commit_lsn DESC, seq DESC LIMIT 50;

-- name: full_text
SELECT {columns} FROM activity.records
 WHERE {search} @@ websearch_to_tsquery('simple', %(search)s)
 ORDER BY occurred_at DESC, commit_lsn DESC, seq DESC LIMIT 50;

-- name: full_text_common_word
SELECT {columns} FROM activity.records
 WHERE {search} @@ websearch_to_tsquery('simple', %(common_word)s)
 ORDER BY occurred_at DESC, commit_lsn DESC, seq DESC LIMIT 50;
