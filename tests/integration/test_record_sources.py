"""The store's source column (sql/migrations/0025_record_sources.sql): what the PostgreSQL
sink writes in it, two sources that share commit LSNs in one store, and a store of the
previous version migrated with its records and chain intact."""

from __future__ import annotations

from typing import Any

import pytest

from cdc.control.setup import setup, setup_store
from cdc.control.setup import store as setup_code
from cdc.store.chain import verify_chain
from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, make_settings, setup_before

pytestmark = [pytest.mark.integration]

SOURCES = "SELECT source_id, count(*) FROM activity.records GROUP BY source_id ORDER BY 1"


def _system_id(pg: PgDatabase) -> str:
    return str(pg.execute("SELECT system_identifier::text FROM pg_control_system()")[0][0])


def _workload(pg: PgDatabase) -> None:
    pg.execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g")
    pg.execute("UPDATE t SET v = 'w' WHERE id <= 10")


def test_two_slots_of_one_cluster_share_commit_lsns_and_each_record_is_stored_once(
    pg: PgDatabase,
) -> None:
    """Two slots of one database see the same commits (same commit LSN, seq and time): before
    the key had the source, the second daemon's records collided with the first's."""
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    first = make_settings(pg, [{"name": "public.t"}])
    second = first.model_copy(
        update={"source": first.source.model_copy(update={"slot": f"{pg.slot}_b"})}
    )
    setup(first)
    setup(second)
    _workload(pg)
    assert drain(first).records == 60
    assert drain(second).records == 60
    system_id = _system_id(pg)
    assert pg.execute(SOURCES) == [(f"{system_id}:{pg.slot}", 60), (f"{system_id}:{pg.slot}_b", 60)]
    with pg.connect() as conn:
        report = verify_chain(conn, "activity", "records")
    assert report.problem is None and report.checked == 120, report.problem


def test_a_store_of_the_previous_version_migrates_keeping_its_records_and_chain(
    pg: PgDatabase,
) -> None:
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    settings = make_settings(pg, [{"name": "public.t"}])
    every = setup_code.migration_files()
    setup_before(settings, next(v for v, name in every if name.endswith("_record_sources.sql")))
    assert not _has_column(pg, "source_id")
    _workload(pg)
    assert drain(settings).records == 60
    report = setup_store(settings, pg.dsn)
    assert any("0025_record_sources.sql" in line for line in report.actions), report.actions
    assert _key(pg) == ["commit_lsn", "seq", "occurred_at", "source_id"]
    pg.execute("UPDATE t SET v = 'x' WHERE id <= 5")
    assert drain(settings).records == 5
    assert pg.execute(SOURCES) == [("", 60), (f"{_system_id(pg)}:{pg.slot}", 5)]
    with pg.connect() as conn:
        report_after = verify_chain(conn, "activity", "records")
    assert report_after.problem is None and report_after.checked == 65, report_after.problem


def _has_column(pg: PgDatabase, name: str) -> bool:
    rows: list[Any] = pg.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = 'activity' "
        "AND table_name = 'records' AND column_name = %s",
        (name,),
    )
    return bool(rows)


def _key(pg: PgDatabase) -> list[str]:
    rows = pg.execute(
        "SELECT a.attname FROM pg_index i JOIN unnest(i.indkey) WITH ORDINALITY k(n, o) ON true "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n "
        "WHERE i.indrelid = 'activity.records'::regclass AND i.indisprimary ORDER BY k.o"
    )
    return [str(row[0]) for row in rows]
