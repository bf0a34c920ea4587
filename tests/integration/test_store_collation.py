"""The store's key columns compare byte-wise (migration 0026) in a database made in the host's
locale, where PostgreSQL would otherwise compare them with strcoll at every index insert: the
indexes are built with collation C, every reader and the daily fold work there, and a store
of the previous version is upgraded with its records, chain, counts and privileges intact."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from cdc.config import Settings
from cdc.control.partitions import apply_maintenance, plan_maintenance
from cdc.control.setup import plan_setup, setup
from cdc.store import RecordFilter, activity_stats, open_store
from cdc.store.chain import verify_chain
from tests.fix_pg import PgDatabase, PgServer, drop_database
from tests.integration.helpers import make_settings, setup_before
from tests.integration.test_store import DDL, TABLES, db_now, synthetic, write

pytestmark = pytest.mark.integration

HOST_LOCALE = "C.utf8"  # every Debian (glibc >= 2.35) has it; its strcoll is not memcmp
BYTEWISE_KEYS_MIGRATION = 26  # sql/migrations/0026_bytewise_keys.sql

# The collation of every text column in an index of the tables the sink writes per record: the
# records (every partition) and the rollups. Not the records' source_id: the primary key compares
# it only when (commit_lsn, seq, occurred_at) are equal, records of two sources at one position,
# and 0026 does not build the key again for that.
INDEXED_TEXT_COLLATIONS = """
SELECT DISTINCT t.relname, a.attname, coll.collname
  FROM pg_index i
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN LATERAL unnest(i.indkey::int2[], i.indcollation::oid[]) AS k(attnum, coll_oid)
       ON k.attnum > 0
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
  JOIN pg_collation coll ON coll.oid = k.coll_oid
 WHERE n.nspname = 'activity' AND a.atttypid = 'text'::regtype
   AND a.attname <> 'source_id'
   AND (t.oid IN (SELECT relid FROM pg_partition_tree('activity.records'))
        OR t.relname IN ('activity_per_minute', 'activity_per_hour', 'activity_per_day'))
"""


@pytest.fixture
def locale_pg(pg_server: PgServer) -> Iterator[PgDatabase]:
    """A fresh database made in the host's locale rather than the test cluster's C."""
    suffix = uuid.uuid4().hex[:10]
    name = f"cdc_test_{suffix}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE {} LC_CTYPE {}"
            ).format(sql.Identifier(name), sql.Literal(HOST_LOCALE), sql.Literal(HOST_LOCALE))
        )
    database = PgDatabase(
        pg_server, name, pg_server.dsn_for(name), slot=f"slot_{suffix}", publication=f"pub_{suffix}"
    )
    try:
        assert (
            database.execute("SELECT datcollate FROM pg_database WHERE datname = %s", (name,))[0][0]
            == HOST_LOCALE
        )
        yield database
    finally:
        drop_database(pg_server, name)


def _indexed_collations(pg: PgDatabase) -> dict[str, set[tuple[str, str]]]:
    """The collations of the indexed text columns, per collation name."""
    found: dict[str, set[tuple[str, str]]] = {}
    for table, column, collation in pg.execute(INDEXED_TEXT_COLLATIONS):
        found.setdefault(collation, set()).add((table, column))
    return found


def _records(settings: Settings, **fields: Any) -> list[str]:
    with open_store(settings) as store:
        return sorted(r.action for r in store.records(RecordFilter(**fields), limit=1000))


def _write_some(pg: PgDatabase, settings: Settings) -> datetime:
    """Six records over two days; returns the later day's commit time."""
    now = db_now(pg)
    write(
        pg,
        settings,
        synthetic(now - timedelta(days=2), 3, entity_type="account", entity_id="Zoë"),
        synthetic(now, 2, category="compliance", severity="notice", actor_id="ada"),
        synthetic(now, 1, action="account.delete", severity="error", entity_id="zoe"),
    )
    return now


def _reads(pg: PgDatabase, settings: Settings) -> tuple[Any, ...]:
    """What the readers answer: entity history, actor, category + severity, min severity,
    statistics over a long window (per-day and per-hour rollups together) and the view."""
    with open_store(settings) as store:
        stats = activity_stats(store, timedelta(days=30), by=("category", "severity"))
    return (
        _records(settings, entity_type="account", entity_id="Zoë"),
        _records(settings, actor_id="ada"),
        _records(settings, category="compliance", severities=("notice",)),
        _records(settings, severities=("error", "critical")),
        (
            stats.total,
            sorted((k, [(c.value, c.n) for c in v]) for k, v in stats.breakdowns.items()),
        ),
        pg.execute(
            "SELECT category, severity, sum(n)::int FROM activity.daily_activity "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ),
    )


def test_in_a_database_of_the_hosts_locale_the_store_indexes_its_keys_bytewise(
    locale_pg: PgDatabase,
) -> None:
    pg = locale_pg
    pg.execute(DDL)
    settings = make_settings(pg, TABLES)
    setup(settings)
    _write_some(pg, settings)

    collations = _indexed_collations(pg)
    assert set(collations) == {"C"}, collations  # no index compares with the locale
    indexed = {column for _, column in collations["C"]}
    assert {"entity_type", "entity_id", "actor_id", "category", "severity"} <= indexed
    assert {table for table, _ in collations["C"]} >= {
        "activity_per_minute",
        "activity_per_hour",
        "activity_per_day",
    }
    # byte equality: 'Zoë' and 'zoe' are different entities, under any deterministic locale
    entity, actor, compliance, errors, stats, daily = _reads(pg, settings)
    assert entity == ["account.insert"] * 3
    assert actor == ["account.insert"] * 2
    assert compliance == ["account.insert"] * 2
    assert errors == ["account.delete"]
    assert stats[0] == 6
    assert daily == [
        ("account_management", "error", 1),
        ("account_management", "info", 3),
        ("compliance", "notice", 2),
    ]
    # the daily fold reads the per-hour rollups and writes the per-day ones, both byte-wise
    assert list(
        apply_maintenance(settings, plan_maintenance(settings, ahead=3, retention_months=None))
    )
    assert pg.execute("SELECT category, sum(n)::int FROM activity.activity_per_day GROUP BY 1") == [
        ("account_management", 3)
    ]
    assert _reads(pg, settings)[4] == stats


def test_a_store_of_the_previous_version_is_upgraded_with_its_records_chain_counts_and_grants(
    locale_pg: PgDatabase,
) -> None:
    pg = locale_pg
    pg.execute(DDL)
    settings = make_settings(pg, TABLES)
    setup_before(settings, BYTEWISE_KEYS_MIGRATION)
    assert set(_indexed_collations(pg)) == {"default"}  # the locale's strcoll
    reader = f"reader_{uuid.uuid4().hex[:8]}"
    pg.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(reader)))
    try:
        pg.execute(
            sql.SQL("GRANT SELECT ON activity.daily_activity TO {}").format(sql.Identifier(reader))
        )
        now = _write_some(pg, settings)
        before = _reads(pg, settings)
        stored = pg.execute("SELECT * FROM activity.records ORDER BY commit_lsn, seq")

        pg.execute("ANALYZE activity.records")  # the estimate the plan reads
        steps = [step.description for step in plan_setup(settings).steps]
        assert steps[0] == (
            "apply migration 0026_bytewise_keys.sql to activity.records; it locks the ~6 "
            "records while it builds the four btrees over their text columns again (~4 s per "
            "million records): the daemon's writes wait"
        )
        report = setup(settings)
        assert any("0026_bytewise_keys" in line for line in report.actions)
        assert set(_indexed_collations(pg)) == {"C"}
        assert pg.execute("SELECT * FROM activity.records ORDER BY commit_lsn, seq") == stored
        assert _reads(pg, settings) == before
        assert pg.execute(
            "SELECT has_table_privilege(%s, 'activity.daily_activity', 'SELECT')", (reader,)
        ) == [(True,)]
        # records written after the upgrade add to the same rollup rows (the upsert's key)
        rows_before = pg.execute("SELECT count(*) FROM activity.activity_per_hour")
        write(pg, settings, synthetic(now, 4, category="compliance", severity="notice"))
        assert pg.execute("SELECT count(*) FROM activity.activity_per_hour") == rows_before
        assert (
            _records(settings, category="compliance", severities=("notice",))
            == ["account.insert"] * 6
        )
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            chain = verify_chain(conn, "activity", "records")
        assert chain.problem is None and chain.checked == 10
    finally:
        pg.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(reader)))
        pg.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(reader)))
