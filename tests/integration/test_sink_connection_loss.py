"""The sink's session terminated under it (a failover, ``pg_terminate_backend``, a restart of
the store): whatever the sink was doing, the caller gets a ``ConnectError`` that says the
connection was lost, so the daemon's supervisor and ``cdc ingest`` reconnect, never a raw
psycopg error that ends the process ("unexpected internal error"), and the store stays whole:
every acknowledged record stored once, the chain intact."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import psycopg
import pytest

from cdc.errors import CdcError, ConnectError
from cdc.pipeline.activity import ActivityRecord
from cdc.pipeline.batching import Flush
from cdc.pipeline.sink import Sink
from cdc.pipeline.sink_statements import SinkStatements
from cdc.retry import is_connection_loss
from cdc.store.chain import verify_chain
from tests.fix_pg import PgDatabase
from tests.integration.test_sink_flush_end import store  # noqa: F401  (the store's fixture)
from tests.integration.test_store import (
    _fresh_lsns,  # noqa: F401  (the autouse fixture of made-up LSNs)
    checkpoint_of,
    db_now,
    synthetic,
)

pytestmark = pytest.mark.integration

SINK_SESSIONS = (
    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
    "WHERE application_name = 'activity-cdc sink' AND datname = %s"
)


def _sink(pg: PgDatabase) -> Sink:
    return Sink(pg.dsn, schema="activity", table="records", slot=pg.slot)


def _keys(records: list[ActivityRecord]) -> set[tuple[str, int]]:
    return {(record.commit_lsn, record.seq) for record in records}


@pytest.mark.usefixtures("store")
def test_a_session_terminated_between_opening_and_reading_the_chain_head_is_a_lost_connection(
    pg: PgDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window the JetStream chaos run hit once: the session opened, then terminated before
    the chain's head is read. The failed read's rollback cannot reach the server either."""
    render = SinkStatements.render

    def render_then_terminate(statements: SinkStatements, conn: psycopg.Connection[Any]) -> None:
        render(statements, conn)
        (terminated,) = pg.execute(SINK_SESSIONS, (pg.name,))[0]
        assert terminated

    monkeypatch.setattr(SinkStatements, "render", render_then_terminate)
    sink = _sink(pg)
    with pytest.raises(ConnectError) as raised:
        sink.open()
    sink.close()
    assert is_connection_loss(raised.value)
    assert "sink connection lost" in str(raised.value)

    monkeypatch.setattr(SinkStatements, "render", render)
    again = _sink(pg)  # what the supervisor does next: a new session, and the write goes on
    again.open()
    try:
        records = synthetic(db_now(pg), 3)
        again.write(Flush(records, checkpoint_of(records)))
    finally:
        again.close()
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 3


@pytest.mark.usefixtures("store")
def test_sessions_terminated_at_random_moments_fail_as_lost_connections_and_lose_nothing(
    pg: PgDatabase,
) -> None:
    """A second session terminates the sink's at random moments (every 0.5-20 ms) while the
    sink opens, writes chunks, commits and stores checkpoints, over and over. Every failure is
    a ConnectError that reads as a lost connection; every flush that returned is stored; what
    is stored is only what was sent; the chain is intact."""
    rng = random.Random(17)
    stop = threading.Event()

    def terminate_sink_sessions() -> None:
        with psycopg.connect(pg.dsn, autocommit=True) as admin:
            while not stop.is_set():
                time.sleep(rng.uniform(0.0005, 0.02))
                admin.execute(SINK_SESSIONS.replace(", 5000", ""), (pg.name,))

    terminator = threading.Thread(target=terminate_sink_sessions)
    terminator.start()
    now = db_now(pg)
    confirmed: set[tuple[str, int]] = set()
    in_doubt: set[tuple[str, int]] = set()  # sent in a transaction whose end was not seen
    failures: list[BaseException] = []
    try:
        for _ in range(500):
            sink = _sink(pg)
            sent: list[ActivityRecord] = []
            try:
                sink.open()
                for _ in range(3):
                    chunk, last = synthetic(now, 20), synthetic(now, 5)
                    sent += chunk + last
                    sink.write(Flush(chunk, None))
                    sink.write(Flush(last, checkpoint_of(last)))
                    confirmed |= _keys(sent)
                    sent = []
            except CdcError as exc:
                failures.append(exc)
                in_doubt |= _keys(sent)
            finally:
                sink.close()
    finally:
        stop.set()
        terminator.join()
    assert failures, "no session was terminated: the test proved nothing"
    for failure in failures:
        assert isinstance(failure, ConnectError) and is_connection_loss(failure), failure
    assert confirmed, "no flush got through"
    stored = {
        (str(lsn), seq)
        for lsn, seq in pg.execute("SELECT commit_lsn::text, seq FROM activity.records")
    }
    assert confirmed <= stored
    assert stored <= confirmed | in_doubt
    with pg.connect() as conn:
        chain = verify_chain(conn, "activity", "records")
    assert chain.problem is None and chain.checked == len(stored)
