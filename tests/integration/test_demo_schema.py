"""The demo platform: its schema, the 64 legacy audit triggers, the example config, and the
workload's ground truth, checked against the legacy audit log it replaces."""

from __future__ import annotations

import random
import threading
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from cdc.config import settings_from_mapping
from cdc.demo.workload import (
    PLATFORM_TABLES,
    GroundTruth,
    InDoubt,
    load_platform_schema,
    run_workload,
    seed,
)
from cdc.errors import PrerequisiteError
from tests.fix_pg import PgDatabase

pytestmark = pytest.mark.integration

EXAMPLE_CONFIG = Path(__file__).parents[2] / "examples" / "platform.toml"

AUDIT_TRIGGERS = """
SELECT c.relname AS table_name, t.tgname, p.proname
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_proc p ON p.oid = t.tgfoid
 WHERE NOT t.tgisinternal AND t.tgname LIKE 'audit\\_%'
"""


def load(dsn: str, *, legacy_triggers: bool) -> None:
    with psycopg.connect(dsn) as conn:
        load_platform_schema(conn, legacy_triggers=legacy_triggers)


def query(dsn: str, text: Any, params: Any = None) -> list[Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(text, params).fetchall()


def public_tables(dsn: str) -> set[str]:
    rows = query(
        dsn,
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    return {row[0] for row in rows}


def audit_log_counts(dsn: str) -> Counter[tuple[str, str]]:
    """Row changes the legacy triggers logged, keyed like GroundTruth.counts."""
    rows = query(
        dsn,
        "SELECT table_name, lower(operation), count(*) FROM public.audit_log"
        " WHERE operation IN ('INSERT', 'UPDATE', 'DELETE') GROUP BY 1, 2",
    )
    return Counter({(table, operation): count for table, operation, count in rows})


def seeded_with_legacy_triggers(dsn: str, seed_value: int = 1) -> GroundTruth:
    load(dsn, legacy_triggers=True)
    with psycopg.connect(dsn) as conn:
        return seed(conn, scale=1, rng=random.Random(seed_value))


# -------------------------------------------------------------------------------------------------
# Schema and triggers
# -------------------------------------------------------------------------------------------------


def test_platform_schema_loads_twice_on_an_empty_database(pg_dsn: str) -> None:
    load(pg_dsn, legacy_triggers=False)
    load(pg_dsn, legacy_triggers=False)

    assert public_tables(pg_dsn) == set(PLATFORM_TABLES)
    assert len(PLATFORM_TABLES) == 18


def test_platform_schema_has_composite_key_money_columns_and_no_cascading_foreign_keys(
    pg_dsn: str,
) -> None:
    load(pg_dsn, legacy_triggers=False)

    key = query(
        pg_dsn,
        "SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_constraint k"
        " JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY(k.conkey)"
        " WHERE k.conrelid = 'public.user_roles'::regclass AND k.contype = 'p'",
    )
    assert key == [(["user_id", "role"],)]
    money = query(
        pg_dsn,
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'"
        " AND data_type = 'numeric' AND numeric_precision = 38 AND numeric_scale = 18",
    )
    assert money[0][0] >= 10
    # A cascade would change rows the statement's row count does not include.
    cascades = query(
        pg_dsn,
        "SELECT conname FROM pg_constraint WHERE contype = 'f'"
        " AND connamespace = 'public'::regnamespace AND confdeltype IN ('c', 'n', 'd')",
    )
    assert cascades == []


def test_platform_schema_alone_has_no_audit_triggers(pg_dsn: str) -> None:
    load(pg_dsn, legacy_triggers=False)

    assert query(pg_dsn, AUDIT_TRIGGERS) == []
    assert "audit_log" not in public_tables(pg_dsn)


def test_legacy_audit_adds_exactly_64_audit_triggers_on_the_18_tables(pg_dsn: str) -> None:
    load(pg_dsn, legacy_triggers=True)
    load(pg_dsn, legacy_triggers=True)  # idempotent

    count = query(
        pg_dsn, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'audit_%'"
    )
    assert count == [(64,)]
    triggers = query(pg_dsn, AUDIT_TRIGGERS)
    per_table = Counter(table for table, _, _ in triggers)
    assert set(per_table) == set(PLATFORM_TABLES)
    assert per_table["subscriptions"] == 5
    assert sorted(per_table.values()) == [3] * 9 + [4] * 8 + [5]


def test_audit_triggers_are_row_level_after_triggers_calling_audit_functions(
    pg_dsn: str,
) -> None:
    load(pg_dsn, legacy_triggers=True)

    rows = query(
        pg_dsn,
        "SELECT p.proname, count(*),"
        " bool_and(t.tgtype & 1 = 1),"  # FOR EACH ROW
        " bool_and(t.tgtype & 2 = 0)"  # AFTER (not BEFORE)
        " FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
        " WHERE NOT t.tgisinternal AND p.proname LIKE 'audit_%' GROUP BY 1 ORDER BY 1",
    )
    assert rows == [
        ("audit_amount_change", 3, True, True),
        ("audit_row_change", 54, True, True),
        ("audit_status_change", 7, True, True),
    ]


def test_updated_at_triggers_are_not_named_like_audit_triggers(pg_dsn: str) -> None:
    load(pg_dsn, legacy_triggers=True)

    rows = query(
        pg_dsn,
        "SELECT t.tgname, t.tgtype & 2 = 2 FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
        " WHERE NOT t.tgisinternal AND p.proname = 'set_updated_at'",
    )
    assert len(rows) >= 10
    for name, before in rows:
        assert not name.startswith("audit_"), name
        assert before, f"{name} should be a BEFORE trigger"


# -------------------------------------------------------------------------------------------------
# Ground truth
# -------------------------------------------------------------------------------------------------


def test_workload_ground_truth_equals_the_legacy_audit_log(pg_dsn: str) -> None:
    truth = seeded_with_legacy_triggers(pg_dsn)
    truth.merge(run_workload(pg_dsn, transactions=400, rng_seed=7, rollback_ratio=0.1))

    assert truth.exact and truth.failed == 0 and truth.errors == []
    assert truth.rolled_back > 0
    assert truth.committed + truth.rolled_back == 401  # the seed is one transaction
    assert truth.counts == audit_log_counts(pg_dsn)
    operations = {operation for _, operation in truth.counts}
    assert operations == {"insert", "update", "delete"}
    assert {table for table, _ in truth.counts} == set(PLATFORM_TABLES)


def test_workload_with_four_clients_ground_truth_equals_the_legacy_audit_log(
    pg_dsn: str,
) -> None:
    truth = seeded_with_legacy_triggers(pg_dsn)
    truth.merge(run_workload(pg_dsn, transactions=400, clients=4, rng_seed=3))

    assert truth.exact and truth.errors == []
    assert truth.committed + truth.rolled_back + truth.failed == 401
    assert truth.counts == audit_log_counts(pg_dsn)


def test_ground_truth_stays_exact_when_workload_backends_are_terminated(pg_dsn: str) -> None:
    truth = seeded_with_legacy_triggers(pg_dsn)
    done = threading.Event()
    terminated = 0

    def terminate_backends() -> None:
        nonlocal terminated
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            while not done.wait(0.05):
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                    " FROM pg_stat_activity WHERE application_name LIKE 'cdc-demo-workload-%'"
                ).fetchone()
                terminated += row[0] if row else 0

    killer = threading.Thread(target=terminate_backends)
    killer.start()
    try:
        truth.merge(run_workload(pg_dsn, duration_s=3.0, clients=3, rng_seed=11))
    finally:
        done.set()
        killer.join()

    assert terminated > 0
    assert truth.failed > 0 and truth.committed > 0
    assert truth.exact and truth.errors == []
    assert truth.counts == audit_log_counts(pg_dsn)


def test_in_doubt_commits_are_counted_only_if_the_server_committed_them(pg_dsn: str) -> None:
    load(pg_dsn, legacy_triggers=False)
    txids = {}
    with psycopg.connect(pg_dsn) as conn:
        for outcome in ("committed", "aborted"):
            conn.execute("INSERT INTO public.users (email, full_name) VALUES (%s, 'X')", (outcome,))
            row = conn.execute("SELECT txid_current()").fetchone()
            assert row is not None
            txids[outcome] = row[0]
            if outcome == "committed":
                conn.commit()
            else:
                conn.rollback()
    truth = GroundTruth(
        in_doubt=[
            InDoubt(txids["committed"], Counter({("users", "insert"): 1})),
            InDoubt(txids["aborted"], Counter({("users", "insert"): 1})),
        ]
    )

    assert truth.resolve_in_doubt(pg_dsn)
    assert truth.counts == Counter({("users", "insert"): 1})
    assert (truth.committed, truth.failed, truth.resolved, truth.in_doubt) == (1, 1, 2, [])


def test_workload_is_deterministic_for_a_seed_with_one_client(pg: PgDatabase) -> None:
    other = f"{pg.name}_twin"
    with psycopg.connect(pg.server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other)))
    try:
        results = []
        for dsn in (pg.dsn, pg.server.dsn_for(other)):
            load(dsn, legacy_triggers=False)
            results.append(run_workload(dsn, transactions=200, rng_seed=42))
    finally:
        with psycopg.connect(pg.server.dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(other))
            )

    first, second = results
    assert first.counts == second.counts
    assert (first.committed, first.rolled_back) == (second.committed, second.rolled_back)
    assert first.total() > 200


def test_stop_event_ends_the_workload_with_what_it_committed(pg_dsn: str) -> None:
    truth = seeded_with_legacy_triggers(pg_dsn)
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    started = time.monotonic()
    try:
        truth.merge(run_workload(pg_dsn, stop=stop, rng_seed=5))
    finally:
        timer.cancel()

    assert time.monotonic() - started < 10
    assert truth.committed > 1
    assert truth.counts == audit_log_counts(pg_dsn)


def test_workload_without_the_schema_says_to_load_it(pg_dsn: str) -> None:
    with pytest.raises(PrerequisiteError, match="load_platform_schema"):
        run_workload(pg_dsn, transactions=1)


def test_document_content_is_large_enough_to_be_toasted(pg_dsn: str) -> None:
    load(pg_dsn, legacy_triggers=False)
    run_workload(pg_dsn, transactions=50, rng_seed=1)

    rows = query(
        pg_dsn,
        "SELECT max(octet_length(content)), pg_relation_size(c.reltoastrelid)"
        " FROM public.documents, pg_class c WHERE c.oid = 'public.documents'::regclass"
        " GROUP BY c.reltoastrelid",
    )
    largest, toast_bytes = rows[0]
    assert largest > 100_000
    assert toast_bytes > 0


# -------------------------------------------------------------------------------------------------
# The example configuration
# -------------------------------------------------------------------------------------------------


def test_example_config_validates_and_lists_exactly_the_18_schema_tables(pg_dsn: str) -> None:
    load(pg_dsn, legacy_triggers=False)
    with EXAMPLE_CONFIG.open("rb") as handle:
        settings = settings_from_mapping(
            tomllib.load(handle), origin=str(EXAMPLE_CONFIG), env={"CDC_SOURCE_DSN": "x"}
        )

    configured = {(rules.schema_name, rules.table_name) for rules in settings.tables}
    assert configured == {("public", table) for table in public_tables(pg_dsn)}
    assert len(settings.tables) == 18
    assert len({rules.category for rules in settings.tables}) == 18


def test_example_config_names_only_columns_that_exist(pg_dsn: str) -> None:
    load(pg_dsn, legacy_triggers=False)
    with EXAMPLE_CONFIG.open("rb") as handle:
        settings = settings_from_mapping(tomllib.load(handle), env={"CDC_SOURCE_DSN": "x"})
    columns: dict[str, set[str]] = {}
    for table, column in query(
        pg_dsn,
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public'",
    ):
        columns.setdefault(table, set()).add(column)

    for rules in settings.tables:
        named = {*rules.actor_columns, *rules.ignore_columns, *rules.redact_columns}
        assert named <= columns[rules.table_name], rules.name
