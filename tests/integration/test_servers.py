"""What differs between the supported servers (15, 16, 17, 18), tested on each of them."""

from __future__ import annotations

import pytest

from cdc.control.heartbeat import HeartbeatEmitter
from cdc.logical_messages import has_flush
from cdc.lsn import Lsn
from tests.fix_pg import PgDatabase

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
