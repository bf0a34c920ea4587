"""The reading queries of the store, composed with ``psycopg.sql`` and parameters. Pure: they
build statements, :mod:`cdc.store.reader` runs them.

Each filter is a plain comparison on a bare column so that the planner can use the indexes of
migration 0001 (and prune partitions by ``occurred_at``):

===========================  ============================================================
filter                       index
===========================  ============================================================
(none), --since/--until      ``(occurred_at)``, scanned backwards: newest first
--entity-type [--entity-id]  ``(entity_type, entity_id, occurred_at)``
--actor                      ``(actor_id, occurred_at) WHERE actor_id IS NOT NULL``
--category [--severity]      ``(category, severity, occurred_at)``, one scan per severity
--severity / --min-severity  ``(severity, occurred_at)``, one scan per severity
--source, --action           none of their own: they narrow whichever scan the others pick
--search                     GIN on ``summary_vector(summary)`` (0012), or with
                             ``[store] search_values`` the GIN on
                             ``search_vector(summary, new, old, changes)``
--follow                     the primary key ``(commit_lsn, seq, occurred_at)``
===========================  ============================================================

A page of a search is probed newest window first (``window``, :mod:`cdc.store.search_windows`):
the same page, without rechecking every candidate of the whole store.

Pages are keyset pages: the next page is "before the last row's (occurred_at, commit_lsn,
seq)", a row comparison the btree answers directly; no OFFSET, so page 1000 costs what page 1
costs.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from cdc.store.model import STORED_COLUMNS, RecordCursor, RecordFilter
from cdc.store.search_windows import Window, search_condition, window_conditions

# Newest first, and its reverse; the cursor compares the same three columns. Qualified with
# the table's alias ``r``: a bare ``commit_lsn`` in ORDER BY would name the output column
# ``commit_lsn::text`` and sort LSNs as text ('0/A' after '0/10').
NEWEST_FIRST = sql.SQL("r.occurred_at DESC, r.commit_lsn DESC, r.seq DESC")
OLDEST_FIRST = sql.SQL("r.occurred_at, r.commit_lsn, r.seq")
COMMIT_ORDER = sql.SQL("r.commit_lsn, r.seq")


def column_expressions() -> list[tuple[str, sql.Composable]]:
    """Each field of :class:`~cdc.store.model.StoredRecord` and the expression that reads it
    from a stored row: the one place that says how a record is read (the pages, the follow
    and the export all select these)."""
    return [
        (name, sql.SQL("commit_lsn::text") if name == "commit_lsn" else sql.Identifier(name))
        for name in STORED_COLUMNS
    ]


def select_list() -> sql.Composable:
    """The columns of :class:`~cdc.store.model.StoredRecord`, in its field order."""
    return sql.SQL(", ").join(expression for _name, expression in column_expressions())


def search_document(schema: str, *, values: bool) -> sql.Composable:
    """The full-text document a search matches: the summary, or (``values``) the summary and
    the row values. The same expression as the store's GIN index, or the index is not used."""
    if values:
        return sql.SQL("{}.search_vector(summary, new, old, changes)").format(
            sql.Identifier(schema)
        )
    return sql.SQL("{}.summary_vector(summary)").format(sql.Identifier(schema))


def conditions(
    f: RecordFilter, schema: str, *, search_values: bool = False, window: Window | None = None
) -> tuple[list[sql.Composable], list[Any]]:
    """The WHERE conditions of a filter and their parameters (positional). ``search_values``:
    search the values too (only when their index exists: see :class:`~cdc.store.Store`);
    ``window``: the search as a probe of that window asks it (the window's bounds are
    :func:`page_query`'s)."""
    parts: list[sql.Composable] = []
    params: list[Any] = []

    def equals(column: str, value: object) -> None:
        if value is not None:
            parts.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)

    equals("entity_type", f.entity_type)
    equals("entity_id", f.entity_id)
    equals("actor_id", f.actor_id)
    equals("source", f.source)
    equals("action", f.action)
    equals("category", f.category)
    if f.severities is not None and len(f.severities) == 1:
        # equality, not = ANY: with = ANY a btree scan of PostgreSQL 15 cannot return rows in
        # index order, so (category, severity, occurred_at) would need a sort
        equals("severity", f.severities[0])
    elif f.severities is not None:
        parts.append(sql.SQL("severity = ANY(%s)"))
        params.append(list(f.severities))
    equals("schema_name", f.schema_name)
    equals("table_name", f.table_name)
    equals("operation", f.operation)
    for bound, operator in ((f.since, ">="), (f.until, "<")):
        if isinstance(bound, timedelta):
            # now() is stable: partitions are still pruned, the index still bounds the scan
            parts.append(sql.SQL(f"occurred_at {operator} now() - %s"))
            params.append(bound)
        elif bound is not None:
            parts.append(sql.SQL(f"occurred_at {operator} %s"))
            params.append(bound)
    if f.search is not None:
        condition, search_params = search_condition(
            search_document(schema, values=search_values), f.search, window
        )
        parts.append(condition)
        params += search_params
    return parts, params


def _where(parts: list[sql.Composable]) -> sql.Composable:
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts) if parts else sql.SQL("")


def page_query(
    table: sql.Composable,
    schema: str,
    f: RecordFilter,
    *,
    before: RecordCursor | None,
    limit: int | None,
    search_values: bool = False,
    columns: sql.Composable | None = None,
    window: Window | None = None,
) -> tuple[sql.Composed, list[Any]]:
    """Up to ``limit`` records of the filter, newest first, strictly before the cursor;
    ``window``: only those of that window, a probe of a search (:mod:`cdc.store.search_windows`).

    Several severities (``--min-severity``) become one branch per severity, each newest first
    through the ``(category, severity, occurred_at, ...)`` or ``(severity, occurred_at)``
    index and limited, merged by a Merge Append: ``severity = ANY(...)`` cannot return a btree
    scan in index order, so it needed a full Sort of every match, or a walk down the time
    index that filters out every record when the planner expects matches that are not there
    (a severity the category never has: seconds on millions of records).

    ``limit`` None: every record (LIMIT NULL), still in index order, streamed by the server.
    ``columns``: what to select of each record ``r`` (default: the stored columns)."""
    selected = select_list() if columns is None else columns
    if f.severities is not None and len(f.severities) > 1:
        branches: list[sql.Composable] = []
        params: list[Any] = []
        for severity in f.severities:
            branch, branch_params = _page(
                sql.SQL("r.*"),
                table,
                schema,
                replace(f, severities=(severity,)),
                before=before,
                limit=limit,
                search_values=search_values,
                window=window,
            )
            branches.append(sql.SQL("({})").format(branch))
            params += branch_params
        query = sql.SQL("SELECT {} FROM ({}) AS r ORDER BY {} LIMIT %s").format(
            selected, sql.SQL(" UNION ALL ").join(branches), NEWEST_FIRST
        )
        return query, [*params, limit]
    return _page(
        selected, table, schema, f, before=before, limit=limit, search_values=search_values,
        window=window,
    )  # fmt: skip


def _page(
    columns: sql.Composable,
    table: sql.Composable,
    schema: str,
    f: RecordFilter,
    *,
    before: RecordCursor | None,
    limit: int | None,
    search_values: bool,
    window: Window | None,
) -> tuple[sql.Composed, list[Any]]:
    parts, params = conditions(f, schema, search_values=search_values, window=window)
    if before is not None:
        parts.append(sql.SQL("(occurred_at, commit_lsn, seq) < (%s, %s::pg_lsn, %s)"))
        params += [before.occurred_at, before.commit_lsn, before.seq]
    if window is not None:
        bounds, bound_params = window_conditions(f, before, window)
        parts += bounds
        params += bound_params
    query = sql.SQL("SELECT {} FROM {} AS r{} ORDER BY {} LIMIT %s").format(
        columns, table, _where(parts), NEWEST_FIRST
    )
    return query, [*params, limit]


def api_columns() -> list[tuple[str, sql.Composable]]:
    """A record ``r`` as the web API gives it, rendered by PostgreSQL (no row is decoded and
    encoded again in Python): ``record_json``, one JSON object (the stored columns in their
    order, then ``table``, ``cursor`` and ``position``; times as JSON writes them, in the
    session's time zone: what :func:`cdc.web.models.record_json` writes too), and ``cursor``
    beside it (the keyset cursor of the page after it)."""
    cursor = sql.SQL(
        "(to_json(r.occurred_at) #>> '{}') || ',' || r.commit_lsn::text || ',' || r.seq"
    )
    pairs: list[sql.Composable] = []
    for name, expression in column_expressions():
        pairs += [sql.Literal(name), expression]
    pairs += [
        sql.Literal("table"),
        sql.SQL(
            "CASE WHEN r.table_name IS NULL THEN NULL WHEN r.schema_name <> '' "
            "THEN r.schema_name || '.' || r.table_name ELSE r.table_name END"
        ),
        sql.Literal("cursor"),
        cursor,
        sql.Literal("position"),
        sql.SQL("r.commit_lsn::text || ',' || r.seq"),
    ]
    return [
        ("record_json", sql.SQL("json_build_object({})::text").format(sql.SQL(", ").join(pairs))),
        ("cursor", cursor),
    ]


def columns_of(named: list[tuple[str, sql.Composable]]) -> sql.Composable:
    """A select list of named expressions."""
    return sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(expression, sql.Identifier(name)) for name, expression in named
    )


def first_page_query(
    table: sql.Composable,
    schema: str,
    f: RecordFilter,
    *,
    limit: int,
    slack: timedelta,
    search_values: bool = False,
    columns: list[tuple[str, sql.Composable]] | None = None,
    window: Window | None = None,
) -> tuple[sql.Composed, list[Any]]:
    """The newest ``limit`` records of the filter and the head of the whole table (what
    :func:`head_query` reads, from ``slack`` before now) in ONE statement: one snapshot, so a
    live view that goes on from the head neither repeats nor skips a record, and one round
    trip. Each row is the head's ``(commit_lsn, seq)`` then a record's ``columns`` (default:
    the stored ones); there is one row with the record's columns NULL when no record matches,
    and the head NULL when the table has nothing that recent. ``window``: as
    :func:`page_query`'s."""
    named = column_expressions() if columns is None else columns
    page, params = page_query(
        table, schema, f, before=None, limit=limit, search_values=search_values, window=window,
        columns=sql.SQL("{}, r.occurred_at AS order_at, r.commit_lsn AS order_lsn, "
                        "r.seq AS order_seq").format(columns_of(named)),
    )  # fmt: skip
    query = sql.SQL(
        "SELECT h.commit_lsn, h.seq, {page_columns} FROM (SELECT) AS one "
        "LEFT JOIN (SELECT commit_lsn::text, seq FROM {table} AS r "
        "WHERE occurred_at >= now() - %s ORDER BY r.commit_lsn DESC, r.seq DESC LIMIT 1) AS h "
        "ON true LEFT JOIN ({page}) AS p ON true "
        "ORDER BY p.order_at DESC, p.order_lsn DESC, p.order_seq DESC"
    ).format(
        page_columns=sql.SQL(", ").join(
            sql.SQL("p.{}").format(sql.Identifier(name)) for name, _ in named
        ),
        table=table,
        page=page,
    )
    return query, [slack, *params]


def history_query(
    table: sql.Composable,
    *,
    entity_type: str,
    entity_id: str,
    schema_name: str,
    table_name: str,
    columns: sql.Composable | None = None,
) -> tuple[sql.Composed, list[Any]]:
    """Every record of one row of one table, oldest first (the entity index, then a filter
    on the table: an entity type may be shared by several tables)."""
    query = sql.SQL(
        "SELECT {} FROM {} AS r WHERE entity_type = %s AND entity_id = %s "
        "AND schema_name = %s AND table_name = %s ORDER BY {}"
    ).format(columns or select_list(), table, OLDEST_FIRST)
    return query, [entity_type, entity_id, schema_name, table_name]


def head_query(table: sql.Composable) -> sql.Composed:
    """The last written record at or after a time (parameter): where ``--follow`` stands.

    The sink writes in commit order, one transaction at a time, so every record up to the
    newest visible ``(commit_lsn, seq)`` is visible too. The time bound only lets the planner
    skip old partitions."""
    return sql.SQL(
        "SELECT commit_lsn::text, seq, occurred_at FROM {} AS r WHERE occurred_at >= %s "
        "ORDER BY r.commit_lsn DESC, r.seq DESC LIMIT 1"
    ).format(table)


def follow_query(
    table: sql.Composable,
    schema: str,
    f: RecordFilter,
    *,
    floor: datetime,
    after: tuple[str, int],
    through: tuple[str, int],
    limit: int | None,
    search_values: bool = False,
    columns: sql.Composable | None = None,
) -> tuple[sql.Composed, list[Any]]:
    """Records of the filter after one (commit_lsn, seq) and up to another, in commit order;
    ``floor`` (a time they cannot be older than) only prunes partitions. ``columns``: what to
    select of each record ``r`` (default: the stored columns); ``limit`` None: all."""
    parts, params = conditions(f, schema, search_values=search_values)
    parts += [
        sql.SQL("occurred_at >= %s"),
        sql.SQL("(commit_lsn, seq) > (%s::pg_lsn, %s)"),
        sql.SQL("(commit_lsn, seq) <= (%s::pg_lsn, %s)"),
    ]
    params += [floor, *after, *through]
    query = sql.SQL("SELECT {} FROM {} AS r{} ORDER BY {} LIMIT %s").format(
        columns or select_list(), table, _where(parts), COMMIT_ORDER
    )
    return query, [*params, limit]


def transaction_query(
    table: sql.Composable, *, commit_lsn: str, limit: int, columns: sql.Composable | None = None
) -> tuple[sql.Composed, list[Any]]:
    """The records of one source transaction (one commit LSN), in their order: the primary
    key ``(commit_lsn, seq, occurred_at)``, probed once per partition."""
    query = sql.SQL(
        "SELECT {} FROM {} AS r WHERE r.commit_lsn = %s::pg_lsn ORDER BY r.seq LIMIT %s"
    ).format(columns or select_list(), table)
    return query, [commit_lsn, limit]


def record_query(
    table: sql.Composable, *, commit_lsn: str, seq: int, columns: sql.Composable | None = None
) -> tuple[sql.Composed, list[Any]]:
    """One record by its position ``(commit_lsn, seq)``: the primary key."""
    query = sql.SQL("SELECT {} FROM {} AS r WHERE r.commit_lsn = %s::pg_lsn AND r.seq = %s").format(
        columns or select_list(), table
    )
    return query, [commit_lsn, seq]


# Times as ISO 8601 text (2026-11-26T10:00:00.123456+00:00, trailing zeros of the fraction
# left out), the form JSON gives them, in CSV too; the export's session is in UTC.
_TIMES = ("occurred_at", "recorded_at")


def export_columns(fmt: str) -> sql.Composable:
    """What an export selects of each record ``r``: the stored columns, the times as ISO 8601
    text in CSV (as JSON renders them)."""
    if fmt == "jsonl":
        return select_list()
    return sql.SQL(", ").join(
        sql.SQL("to_json({0}) #>> '{{}}' AS {0}").format(sql.Identifier(name))
        if name in _TIMES
        else expression
        for name, expression in column_expressions()
    )


def copy_statement(
    query: sql.Composable, params: list[Any], *, fmt: str, header: bool = True
) -> tuple[sql.Composed, list[Any]]:
    """``COPY (query) TO STDOUT`` as CSV (with a header unless told not to) or as JSON Lines.
    ``query`` selects :func:`export_columns` of each record, in the order to write them.

    JSON Lines: each row as one compact JSON object (``row_to_json``: the stored columns in
    their order, row values exactly as stored, times as JSON timestamps), through COPY's CSV
    format with a quote and a delimiter that JSON text never holds unescaped (control
    characters are escaped in JSON strings), so each line is written as it is: COPY's text
    format would double every backslash. ``row_to_json`` renders ~20% faster than
    ``json_build_object`` (and writes no blank around ``:``)."""
    if fmt == "jsonl":
        query = sql.SQL("SELECT row_to_json(p)::text FROM ({}) AS p").format(query)
        options = sql.SQL("FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02'")
    else:
        options = sql.SQL("FORMAT csv, HEADER") if header else sql.SQL("FORMAT csv")
    return sql.SQL("COPY ({}) TO STDOUT WITH ({})").format(query, options), params


def oldest_first_export(
    table: sql.Composable,
    schema: str,
    f: RecordFilter,
    *,
    fmt: str,
    limit: int,
    search_values: bool = False,
) -> tuple[sql.Composed, list[Any]]:
    """The newest ``limit`` records of the filter, oldest first, as :func:`copy_statement`
    writes them: what ``cdc activity --follow`` prints before the records that come."""
    page, params = page_query(
        table, schema, f, before=None, limit=limit, search_values=search_values,
        columns=sql.SQL("{}, r.occurred_at AS order_at, r.commit_lsn AS order_lsn, "
                        "r.seq AS order_seq").format(export_columns(fmt)),
    )  # fmt: skip
    query = sql.SQL(
        "SELECT {} FROM ({}) AS p ORDER BY p.order_at, p.order_lsn, p.order_seq"
    ).format(
        sql.SQL(", ").join(
            sql.SQL("p.{}").format(sql.Identifier(name)) for name, _ in column_expressions()
        ),
        page,
    )
    return copy_statement(query, params, fmt=fmt)


def export_statement(
    table: sql.Composable,
    schema: str,
    f: RecordFilter,
    *,
    fmt: str,
    limit: int | None,
    before: RecordCursor | None = None,
    search_values: bool = False,
) -> tuple[sql.Composed, list[Any]]:
    """Every record of the filter (before the cursor, the first ``limit`` of them), newest
    first, as :func:`copy_statement` writes them: one statement, streamed by the server in
    index order (the page query), so an export of millions holds no more than a COPY buffer
    anywhere. ``cdc activity --format json|csv`` and the web export both run it."""
    query, params = page_query(
        table, schema, f, before=before, limit=limit, search_values=search_values,
        columns=export_columns(fmt),
    )  # fmt: skip
    return copy_statement(query, params, fmt=fmt)
