"""5. Queries: the monitor's hot queries on a store of millions of records.

The store is the one ``cdc setup`` creates (whatever indexes, partitions and triggers its
migrations give it at the time; they are listed in the results). It is filled with synthetic
records by ``INSERT ... SELECT generate_series`` (bench/sql/fill_activity_records.sql), shaped
from the rules of examples/platform.toml. To load fast, the store's secondary indexes are
dropped during the load and re-created from their own definitions afterwards (the end state is
the same; the primary key stays). Months in the window without a partition of their own get
one through the store's ``create_record_partition`` when it has it, as ``cdc partitions`` would
have done while the months were current.

Each query runs ``query_runs`` times, the queries interleaved, with parameters drawn from the
data (busy and quiet entities and actors, categories with one or several severities, search
terms); latency is measured at the client: execute and fetch all rows.
"""

from __future__ import annotations

import random
import re
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.cdc_process import CONFIG_PATH, SLOT, cdc_setup
from bench.context import BenchContext, log, target
from bench.platform_db import create_platform_db
from bench.server import drop_slot
from bench.stats import percentiles
from cdc.store import RecordFilter
from cdc.store import queries as store_queries

P99_TARGET_MS = 20.0
DBNAME = "queries"
WINDOW_DAYS = 30
FILL_CHUNK_ROWS = 500_000
SQL_DIR = Path(__file__).parent.parent / "sql"
RECORD_COLUMNS = (
    "occurred_at, recorded_at, source, operation, action, category, severity, schema_name, "
    "table_name, entity_type, entity_id, actor_id, context, old, new, changes, summary, xid, "
    "commit_lsn::text, seq"
)
# In monitor_queries.sql: the statement cdc/store/queries.py builds for the parameters' category
# and severities, or for their severities alone.
READER = "{reader}"
SEVERITY_READER = "{severity_reader}"
VALUES_SEARCH = "activity.search_vector(summary, new, old, changes)"
SUMMARY_SEARCH = "activity.summary_vector(summary)"
# Without the store's search function (older stores), search the same text without an index.
FALLBACK_SEARCH = (
    "to_tsvector('simple', coalesce(summary, '') || ' ' || coalesce(new::text, old::text, ''))"
)
TARGETED = (
    "recent_activity",
    "entity_history",
    "actor_activity",
    "category_severity",
    "severity",
    "full_text",
)

# Share of records per table (percent), roughly the platform workload's.
TABLE_SHARES = {
    "notifications": 15,
    "subscriptions": 12,
    "users": 8,
    "approvals": 8,
    "compliance_checks": 8,
    "token_allocations": 8,
    "token_transfers": 6,
    "investors": 6,
    "kyc_verifications": 5,
    "distributions": 5,
    "wallets": 3,
    "documents": 3,
    "api_keys": 3,
    "redemptions": 3,
    "user_roles": 2,
    "projects": 2,
    "tokens": 2,
    "organizations": 1,
}


def run(ctx: BenchContext) -> dict[str, Any]:
    dsn = create_platform_db(ctx.server, DBNAME)
    cdc_setup(dsn)
    try:
        with ctx.server.connect(DBNAME) as conn:
            drop_slot(conn, SLOT)  # nothing is streamed here; the slot would only retain WAL
            store = _describe_store(conn)
            fill = _fill(conn, ctx.sizes.query_records)
            store["partitions"] = _partitions(conn)
            search = _search_expression(conn)
            store["search_document"] = search
            queries = load_queries(search=search)
            params = _parameter_pool(conn, summary_only=search == SUMMARY_SEARCH)
            plans = {
                name: _plan(conn, *_statement(conn, query, params[0]))
                for name, query in queries.items()
            }
            latencies, slowest = _measure(conn, queries, params, ctx.sizes.query_runs)
    finally:
        ctx.server.drop_database(DBNAME)
    results: dict[str, dict[str, Any]] = {
        name: {
            "latency_ms": percentiles(values).as_json(),
            "plan": plans[name],
            "slowest": slowest[name],
        }
        for name, values in latencies.items()
    }
    for name, result in results.items():
        log.info(
            "query %-22s p50 %.2f ms p99 %.2f ms",
            name,
            result["latency_ms"]["p50"],
            result["latency_ms"]["p99"],
        )
    return {
        "status": "ok",
        "store": store,
        "fill": fill,
        "queries": results,
        "targets": [
            target(
                f"query p99: {name}", results[name]["latency_ms"]["p99"], "<=", P99_TARGET_MS, "ms"
            )
            for name in TARGETED
            if name in results
        ],
    }


def load_queries(*, search: str) -> dict[str, str]:
    """The named queries of monitor_queries.sql with the columns and search expression in."""
    text = (SQL_DIR / "monitor_queries.sql").read_text(encoding="utf-8")
    queries: dict[str, str] = {}
    for block in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        statement = body.strip().rstrip(";")
        statement = statement.replace("{columns}", RECORD_COLUMNS).replace("{search}", search)
        queries[name.strip()] = statement
    return queries


def _search_expression(conn: psycopg.Connection[Any]) -> str:
    """The document the store's full-text index covers (cdc/store/reader.py chooses the same
    way): the values when their index exists, else the summary (migration 0012 on)."""
    indexed = {
        definition
        for (definition,) in conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = 'activity.records'::regclass"
        ).fetchall()
    }
    if any("search_vector(" in definition for definition in indexed):
        return VALUES_SEARCH
    if any("summary_vector(" in definition for definition in indexed):
        return SUMMARY_SEARCH
    row = conn.execute(
        "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'activity' AND p.proname = 'search_vector'"
    ).fetchone()
    return VALUES_SEARCH if row else FALLBACK_SEARCH


def _describe_store(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """The store as ``cdc setup`` made it: partitioning, indexes, triggers, migrations."""
    row = conn.execute(
        "SELECT relkind FROM pg_class WHERE oid = 'activity.records'::regclass"
    ).fetchone()
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = 'activity' AND tablename = 'records' ORDER BY indexname"
    ).fetchall()
    triggers = conn.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'activity.records'::regclass "
        "AND NOT tgisinternal ORDER BY tgname"
    ).fetchall()
    try:
        migrations = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM activity.schema_migrations ORDER BY version"
            ).fetchall()
        ]
    except psycopg.Error:
        migrations = []
    return {
        "partitioned": bool(row and row[0] == "p"),
        "indexes": [{"name": name, "definition": definition} for name, definition in indexes],
        "triggers": [r[0] for r in triggers],
        "migrations": migrations,
    }


def _partitions(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), c.reltuples::bigint "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'activity.records'::regclass ORDER BY 1"
    ).fetchall()
    return [{"name": name, "bound": bound, "rows": rows_} for name, bound, rows_ in rows]


def _fill(conn: psycopg.Connection[Any], total: int) -> dict[str, Any]:
    started = time.monotonic()
    _rules_table(conn)
    since = datetime.now(UTC) - timedelta(days=WINDOW_DAYS)
    month_partitions = _partition_past_months(conn, since)
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute("SET max_parallel_maintenance_workers = 2")
    definitions = [
        definition
        for (definition,) in conn.execute(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid = 'activity.records'::regclass AND NOT i.indisprimary"
        ).fetchall()
    ]
    for (name,) in conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 'activity.records'::regclass AND NOT i.indisprimary"
    ).fetchall():
        conn.execute(sql.SQL("DROP INDEX activity.{}").format(sql.Identifier(name)))
    statement = (SQL_DIR / "fill_activity_records.sql").read_text(encoding="utf-8")
    statement = "\n".join(line for line in statement.splitlines() if not line.startswith("--"))
    for first in range(1, total + 1, FILL_CHUNK_ROWS):
        last = min(total, first + FILL_CHUNK_ROWS - 1)
        conn.execute(
            statement.encode(),
            {"first": first, "last": last, "total": total, "window_s": WINDOW_DAYS * 86400},
        )
        log.info("store: %d of %d records written", last, total)
    loaded_s = time.monotonic() - started
    for definition in definitions:
        # pg_get_indexdef() of a partitioned table's index says "ON ONLY": that would create
        # it on the parent alone, leaving every partition without it.
        conn.execute(definition.replace(" ON ONLY ", " ON ", 1).encode())
    conn.execute("VACUUM ANALYZE activity.records")
    size = conn.execute("SELECT pg_total_relation_size('activity.records')").fetchone()
    total_bytes = conn.execute(
        "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
        "WHERE inhparent = 'activity.records'::regclass"
    ).fetchone()
    return {
        "records": total,
        "window_days": WINDOW_DAYS,
        "past_month_partitions_created": month_partitions,
        "load_s": round(loaded_s, 1),
        "index_and_analyze_s": round(time.monotonic() - started - loaded_s, 1),
        "total_mb": round(int((total_bytes and total_bytes[0]) or (size and size[0]) or 0) / 2**20),
    }


def _rules_table(conn: psycopg.Connection[Any]) -> None:
    """bench_record_rules: 100 rows (one per percent of records) from the config's rules."""
    config = tomllib.loads(CONFIG_PATH.read_text(encoding="utf-8"))
    conn.execute(
        "CREATE TEMP TABLE bench_record_rules (slot int PRIMARY KEY, table_name text, "
        "entity_type text, category text, severity_insert text, severity_update text, "
        "severity_delete text, has_actor boolean)"
    )
    slot = 0
    rows = []
    for rules in config["tables"]:
        table = rules["name"].split(".", 1)[1]
        severity = rules.get("severity", {})
        for _ in range(TABLE_SHARES.get(table, 0)):
            rows.append(
                (
                    slot,
                    table,
                    rules.get("entity_type", table),
                    rules.get("category", "data_change"),
                    severity.get("insert", "info"),
                    severity.get("update", "info"),
                    severity.get("delete", "warning"),
                    bool(rules.get("actor_columns")),
                )
            )
            slot += 1
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO bench_record_rules VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows
        )
    if slot != 100:
        raise RuntimeError(f"table shares add up to {slot}%, not 100%")


def _partition_past_months(conn: psycopg.Connection[Any], since: datetime) -> list[str]:
    """Month partitions for the window's past months, through the store's own function."""
    has_function = conn.execute(
        "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'activity' AND p.proname = 'create_record_partition'"
    ).fetchone()
    if not has_function:
        return []
    created: list[str] = []
    try:
        _create_month_partitions(conn, since, created)
    except psycopg.Error as exc:  # the store's functions changed: records go to its default
        log.warning("could not create past month partitions: %s", exc)
    return created


def _create_month_partitions(
    conn: psycopg.Connection[Any], since: datetime, created: list[str]
) -> None:
    month = datetime(since.year, since.month, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    while month < datetime(now.year, now.month, 1, tzinfo=UTC):
        following = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
        covered = conn.execute(
            "SELECT 1 FROM activity.record_partitions() p "
            "WHERE NOT p.is_default AND p.from_at < %s AND p.to_at > %s",
            (following, month),
        ).fetchone()
        if not covered:
            name = f"records_{month:%Y_%m}"
            conn.execute(
                "SELECT activity.create_record_partition(%s, %s, %s)", (name, month, following)
            )
            created.append(name)
        month = following


def _parameter_pool(
    conn: psycopg.Connection[Any], size: int = 400, *, summary_only: bool = False
) -> list[dict[str, Any]]:
    """Parameters drawn from the data: entities and actors weighted by how often they occur
    (the busy ones come up more, as in real use), search terms that select a few records (an
    email or a reference in the values; an entity or an actor in the summary, when only the
    summary is indexed) and common words."""
    rng = random.Random(7)
    sample = conn.execute(
        "SELECT entity_type, entity_id, actor_id, new ->> 'email', new ->> 'reference' "
        "FROM activity.records TABLESAMPLE SYSTEM (1) WHERE new IS NOT NULL LIMIT 5000"
    ).fetchall()
    categories = [
        r[0] for r in conn.execute("SELECT DISTINCT category FROM bench_record_rules").fetchall()
    ]
    severity_choices = [["warning", "error", "critical"], ["notice"], ["info"], ["warning"]]
    words = ["hopper", "lovelace", "turing", "approved", "settled"]
    if summary_only:
        words = ["created", "deleted", "status", "investor", "wallet"]
    pool = []
    for _ in range(size):
        entity_type, entity_id, actor_id, email, reference = rng.choice(sample)
        pool.append(
            {
                "entity_type": entity_type,
                "entity_id": entity_id,
                "actor_id": actor_id or "1",
                "category": rng.choice(categories),
                "severities": rng.choice(severity_choices),
                # an email finds a person's records; a reference, one record; in the
                # summary, one entity's records ("by <actor>" would find thousands for a busy
                # actor: a filter's job, --actor, whose index answers it)
                "search": (
                    f'"{entity_type} {entity_id}"'
                    if summary_only
                    else rng.choice([email or reference, reference])
                ),
                "common_word": rng.choice(words),
            }
        )
    return pool


def _reader_of(query: str) -> str | None:
    """Which reader statement a query of the file stands for (READER, SEVERITY_READER), if any."""
    code = "\n".join(line for line in query.splitlines() if not line.lstrip().startswith("--"))
    return code.strip() if code.strip() in (READER, SEVERITY_READER) else None


def _statement(
    conn: psycopg.Connection[Any], query: str, params: dict[str, Any]
) -> tuple[bytes, Any]:
    """A query of the file and its parameters, ready to execute; ``{reader}`` is the statement
    the reader builds (cdc/store/queries.py) for the category and severities of ``params``."""
    reader = _reader_of(query)
    if reader is not None:
        category = params["category"] if reader == READER else None
        f = RecordFilter(category=category, severities=tuple(params["severities"]))
        built, positional = store_queries.page_query(
            sql.Identifier("activity", "records"), "activity", f, before=None, limit=50
        )
        return built.as_bytes(conn), positional
    return query.encode(), params if "%(" in query else None


def _parameters_of(query: str) -> list[str]:
    reader = _reader_of(query)
    if reader == READER:
        return ["category", "severities"]
    if reader == SEVERITY_READER:
        return ["severities"]
    return re.findall(r"%\((\w+)\)s", query)


def _plan(conn: psycopg.Connection[Any], statement: bytes, params: Any) -> dict[str, Any]:
    """The plan's node types and the indexes it reads (EXPLAIN, not ANALYZE)."""
    explained = conn.execute(b"EXPLAIN (FORMAT JSON) " + statement, params).fetchone()
    assert explained is not None
    nodes: list[str] = []
    indexes: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        nodes.append(node["Node Type"])
        if "Index Name" in node:
            indexes.add(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(explained[0][0]["Plan"])
    return {
        "top": nodes[0],
        "nodes": list(dict.fromkeys(nodes)),  # distinct, in plan order
        "indexes": sorted(indexes),
        # A (non-incremental) Sort: every matching record is read before the first one is
        # returned; fine for a few matches, seconds for a million.
        "full_sort": "Sort" in nodes,
        "seq_scans": sum(1 for node in nodes if node == "Seq Scan"),
    }


def _measure(
    conn: psycopg.Connection[Any],
    queries: dict[str, str],
    pool: list[dict[str, Any]],
    runs: int,
) -> tuple[dict[str, list[float]], dict[str, list[dict[str, Any]]]]:
    """Latencies per query, and each query's three slowest executions with their parameters
    (a p99 is usually a few parameter values the plan does not suit: say which)."""
    latencies: dict[str, list[float]] = {name: [] for name in queries}
    executions: dict[str, list[tuple[float, dict[str, Any]]]] = {name: [] for name in queries}
    for run_index in range(runs):
        params = pool[run_index % len(pool)]
        for name, query in queries.items():
            statement, bound = _statement(conn, query, params)
            started = time.perf_counter()
            conn.execute(statement, bound).fetchall()
            elapsed_ms = (time.perf_counter() - started) * 1000
            latencies[name].append(elapsed_ms)
            executions[name].append((elapsed_ms, params))
    used = {name: _parameters_of(query) for name, query in queries.items()}
    slowest = {
        name: [
            {"ms": round(ms, 2), "params": {key: params[key] for key in used[name]}}
            for ms, params in sorted(runs_, key=lambda item: -item[0])[:3]
        ]
        for name, runs_ in executions.items()
    }
    return latencies, slowest
