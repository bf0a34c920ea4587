"""A store made by the previous version, upgraded by ``cdc setup``: the records read back exactly
as before, the hash chain verifies across the upgrade, and the daemon goes on chaining after it
(migration 0022: old, new and changes as json; 0024: documents compressed with lz4)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from cdc.config import Settings
from cdc.control.setup import setup
from cdc.control.setup.store import JSON_DOCUMENTS_MIGRATION
from cdc.store import RecordFilter, open_store
from cdc.store.chain import verify_chain
from cdc.store.indexes import values_search_indexes
from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, make_settings, setup_before

pytestmark = pytest.mark.integration

DDL = """
CREATE TABLE public.odd (
    id int PRIMARY KEY, f8 float8, n numeric, j json, jb jsonb, "é" text, note text
);
ALTER TABLE public.odd REPLICA IDENTITY FULL;
"""
TABLES = [{"name": "public.odd", "entity_type": "odd", "category": "odd"}]
LZ4_DOCUMENTS_MIGRATION = 24  # sql/migrations/0024_lz4_documents.sql


def _changes(pg: PgDatabase, first: int) -> None:
    """Inserts, updates and deletes with values whose text jsonb rewrites."""
    with pg.connect() as conn:
        conn.execute(
            "INSERT INTO odd VALUES (%s, 1e100, 1.000, "
            """'{"b" :1e5, "a":[1.50,-0.0,"x"], "b":2}', '{"zz": -0, "a": 1E2}', 'é', """
            "'a\tb\nc')",
            (first,),
        )
        conn.execute(
            "INSERT INTO odd (id, n, note) SELECT g, g * 0.10, 'note ' || g "
            "FROM generate_series(%s::int, %s::int) g",
            (first + 1, first + 9),
        )
        conn.execute(
            """UPDATE odd SET f8 = -1.5e-300, j = '{"z" : 0.0, "a": 1}', """
            "n = repeat('9', 300)::numeric WHERE id = %s",
            (first,),
        )
        conn.execute(
            "UPDATE odd SET note = 'changed' WHERE id BETWEEN %s AND %s", (first, first + 4)
        )
        conn.execute("DELETE FROM odd WHERE id IN (%s, %s)", (first + 1, first + 8))


def _read(settings: Settings) -> list[dict[str, Any]]:
    with open_store(settings) as store:
        return [r.as_json() for r in store.records(RecordFilter(), limit=1000)]


def _verify(pg: PgDatabase, settings: Settings) -> int:
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        report = verify_chain(conn, settings.sink.schema_name, settings.sink.table_name)
    assert report.problem is None, report.problem
    assert report.unchained == 0
    return report.checked


def _column_types(pg: PgDatabase) -> dict[str, str]:
    rows = pg.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'activity.records'::regclass AND attname IN ('old', 'new', 'changes')"
    )
    return {name: kind for name, kind in rows}


def test_a_store_of_the_previous_version_reads_the_same_and_its_chain_goes_on_after_the_upgrade(
    pg: PgDatabase,
) -> None:
    pg.execute(DDL)
    settings = make_settings(pg, TABLES, store={"search_values": True})
    setup_before(settings, JSON_DOCUMENTS_MIGRATION)  # the store as the previous version made it
    assert _column_types(pg) == {"old": "jsonb", "new": "jsonb", "changes": "jsonb"}
    _changes(pg, 1)
    drain(settings)
    before = _read(settings)
    texts_before = pg.execute(
        "SELECT old::text, new::text, changes::text FROM activity.records ORDER BY commit_lsn, seq"
    )
    assert _verify(pg, settings) == len(before) == 18

    report = setup(settings)
    assert any("0022_json_documents" in line for line in report.actions)
    assert _column_types(pg) == {"old": "json", "new": "json", "changes": "json"}
    # the records read back exactly as before: values, and the text the chain hashed
    assert _read(settings) == before
    assert (
        pg.execute(
            "SELECT old::text, new::text, changes::text FROM activity.records "
            "ORDER BY commit_lsn, seq"
        )
        == texts_before
    )
    assert _verify(pg, settings) == 18
    # the values' full-text index is made again over json, and searches find values
    with psycopg.connect(pg.dsn) as conn:
        assert len(values_search_indexes(conn, "activity", "records")) == 1
    with open_store(settings) as store:
        assert store.search_values
        found = store.records(RecordFilter(search="changed"), limit=100)
    assert {r.entity_id for r in found} == {"1", "2", "3", "4", "5"}  # by the new value

    # the daemon goes on: new records chain after the converted ones, all verify
    _changes(pg, 100)
    drain(settings)
    assert _verify(pg, settings) == 36
    after = _read(settings)
    assert after[-18:] == before  # newest first: the old records unchanged at the end
    assert {r["operation"] for r in after[:18]} == {"insert", "update", "delete"}


def _has_lz4(pg: PgDatabase) -> bool:
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        try:
            conn.execute("SET default_toast_compression = lz4")
        except psycopg.errors.InvalidParameterValue:
            return False
    return True


def test_documents_written_after_the_upgrade_are_lz4_and_those_before_read_the_same(
    pg: PgDatabase,
) -> None:
    pg.execute("CREATE TABLE public.docs (id int PRIMARY KEY, body text)")
    settings = make_settings(pg, [{"name": "public.docs", "category": "content"}])
    setup_before(settings, LZ4_DOCUMENTS_MIGRATION)
    body = " ".join(f"paragraph {i} of a long document" for i in range(2000))  # ~70 kB
    pg.execute("INSERT INTO docs VALUES (1, %s)", (body,))
    drain(settings)
    setup(settings)
    pg.execute("INSERT INTO docs VALUES (2, %s)", (body,))
    drain(settings)

    methods = pg.execute(
        "SELECT entity_id, pg_column_compression(new) FROM activity.records ORDER BY entity_id"
    )
    assert methods == [("1", "pglz"), ("2", "lz4" if _has_lz4(pg) else "pglz")]
    with open_store(settings) as store:
        assert [r.new for r in store.records(RecordFilter(), limit=10)] == [
            {"id": 2, "body": body},
            {"id": 1, "body": body},
        ]
    assert _verify(pg, settings) == 2
    # a partition made after the upgrade takes the parent's method
    pg.execute(
        "SELECT activity.create_record_partition('records_2099_01', '2099-01-01', '2099-02-01')"
    )
    (method,) = pg.execute(
        "SELECT attcompression FROM pg_attribute "
        "WHERE attrelid = 'activity.records_2099_01'::regclass AND attname = 'new'"
    )[0]
    assert method == ("l" if _has_lz4(pg) else "")
