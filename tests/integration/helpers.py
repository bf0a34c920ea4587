"""Shared steps of the integration tests: config for a test database, setup, drain, read back."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import cdc.control.setup.store as store_setup
from cdc.config import Settings, settings_from_mapping
from cdc.control.setup import setup
from cdc.service.daemon import Daemon, RunStats
from tests.fix_pg import PgDatabase


def make_settings(pg: PgDatabase, tables: list[dict[str, Any]], **sections: Any) -> Settings:
    data: dict[str, Any] = {
        "source": {"dsn": pg.dsn, "slot": pg.slot, "publication": pg.publication},
        "batch": {"max_rows": 500, "max_delay_ms": 20},
        "tables": tables,
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return settings_from_mapping(data, env={})


def setup_and_settings(
    pg: PgDatabase, ddl: str, tables: list[dict[str, Any]], **sections: Any
) -> Settings:
    pg.execute(ddl)
    settings = make_settings(pg, tables, **sections)
    setup(settings)
    return settings


def setup_before(settings: Settings, migration: int) -> None:
    """``cdc setup`` as the version before ``migration`` ran it: the store without that
    migration and those after it, for the tests that upgrade a store of the previous
    version (only setup and ``cdc check`` read the list of migrations)."""
    every = store_setup.migration_files()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            store_setup, "migration_files", lambda: [m for m in every if m[0] < migration]
        )
        setup(settings)


def run_in_thread(daemon: Daemon) -> tuple[threading.Thread, list[BaseException]]:
    """``daemon.run()`` in a started thread; whatever it raises is appended to the list."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def drain(settings: Settings) -> RunStats:
    daemon = Daemon(settings, drain=True)
    try:
        return daemon.run()
    finally:
        daemon.close()


RECORD_QUERY = """
SELECT operation, table_name, entity_id, actor_id, old, new, changes, summary, xid,
       commit_lsn::text, seq, category, severity, action, entity_type, context
  FROM activity.records ORDER BY commit_lsn, seq
"""


def records(pg: PgDatabase) -> list[dict[str, Any]]:
    with pg.connect() as conn:
        cur = conn.execute(RECORD_QUERY)
        assert cur.description is not None
        names = [column.name for column in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
