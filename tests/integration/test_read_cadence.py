"""``[batch] read_interval_ms``: a daemon that keeps up with the stream reads it at most once
per interval, so a trickle of small source transactions is written as one sink transaction
rather than one (or a few) per source commit."""

from __future__ import annotations

import time

from cdc.control.setup import setup
from cdc.service.daemon import Daemon
from tests.fix_pg import PgDatabase
from tests.integration.helpers import make_settings, run_in_thread


def _wait_for_records(pg: PgDatabase, n: int, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while pg.execute("SELECT count(*) FROM activity.records")[0][0] < n:
        assert time.monotonic() < deadline, f"fewer than {n} records after {deadline_s} s"
        time.sleep(0.02)


def test_commits_arriving_within_the_read_interval_are_written_in_one_sink_transaction(
    pg: PgDatabase,
) -> None:
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    # No batch is written for its size or age: only when the stream falls idle, so the number
    # of sink transactions is decided by how often the daemon reads the socket.
    settings = make_settings(
        pg,
        [{"name": "public.t"}],
        batch={"max_delay_ms": 600_000, "read_interval_ms": 3_000},
    )
    setup(settings)
    daemon = Daemon(settings)
    thread, errors = run_in_thread(daemon)
    try:
        pg.execute("INSERT INTO t VALUES (0, 'first')")
        _wait_for_records(pg, 1)  # read, written, and the socket now left for 3 s
        for i in range(1, 31):  # a trickle: 30 source transactions, one row each
            pg.execute("INSERT INTO t VALUES (%s, 'trickle')", (i,))
            time.sleep(0.02)  # (read as they come, they would make many sink transactions)
        _wait_for_records(pg, 31)
    finally:
        daemon.request_stop()
        thread.join(timeout=30)
        daemon.close()
    assert errors == []
    rows = pg.execute(
        "SELECT count(*), count(DISTINCT entity_id), count(DISTINCT recorded_at) "
        "FROM activity.records WHERE new->>'v' = 'trickle'"
    )
    total, distinct, sink_transactions = rows[0]
    assert (total, distinct) == (30, 30)  # each once
    # recorded_at is now() of the sink transaction: 30 commits read in at most two turns
    assert sink_transactions <= 2, sink_transactions
