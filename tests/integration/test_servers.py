"""What differs between the supported servers (15, 16, 17, 18), tested on each of them."""

from __future__ import annotations

import pytest

from cdc.control.heartbeat import HeartbeatEmitter
from cdc.control.setup import setup
from cdc.errors import ConfigError
from cdc.logical_messages import has_flush
from cdc.lsn import Lsn
from tests.fix_pg import PgDatabase
from tests.integration.helpers import make_settings

pytestmark = [pytest.mark.integration, pytest.mark.every_server]


def test_a_heartbeat_is_emitted_and_on_17_and_later_flushed_at_once(pg: PgDatabase) -> None:
    heartbeat = HeartbeatEmitter(pg.dsn, 60)
    try:
        emitted = Lsn.parse(heartbeat.emit_once())
    finally:
        heartbeat.stop()
    with pg.connect() as conn:
        version = conn.info.server_version
        # the fixture's servers run synchronous_commit = off: nothing else flushes it
        row = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
    assert row is not None
    assert heartbeat.sent == 1
    if has_flush(version):
        assert Lsn.parse(row[0]) >= emitted


def test_setup_makes_the_slot_a_failover_slot_on_17_and_later_and_refuses_it_before(
    pg: PgDatabase,
) -> None:
    pg.execute("CREATE TABLE t (id int PRIMARY KEY)")
    with pg.connect() as conn:
        version = conn.info.server_version
    tables = [{"name": "public.t"}]
    if version < 170000:
        with pytest.raises(ConfigError, match="failover_slot = true needs PostgreSQL 17"):
            setup(make_settings(pg, tables, source={"failover_slot": True}))
        setup(make_settings(pg, tables))  # by default: no failover slot before 17
        assert slot_failover(pg) is None
        return
    setup(make_settings(pg, tables, source={"failover_slot": False}))
    assert slot_failover(pg) is False
    # turned on later: setup alters the slot (a replication command), keeping its position
    report = setup(make_settings(pg, tables))
    assert f"slot {pg.slot} is now a failover slot" in report.actions
    assert slot_failover(pg) is True
    assert setup(make_settings(pg, tables)).actions == []


def slot_failover(pg: PgDatabase) -> bool | None:
    """pg_replication_slots.failover (17+), None before 17."""
    rows = pg.execute(
        "SELECT (to_jsonb(s) ->> 'failover')::boolean FROM pg_replication_slots s "
        "WHERE slot_name = %s",
        (pg.slot,),
    )
    return rows[0][0]
