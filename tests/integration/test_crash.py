"""Crash tests: the daemon is a real subprocess, SIGKILLed while it drains a backlog.

After every kill it is started again; a final ``cdc run --drain`` must leave exactly one
record per committed change: none lost, none duplicated.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from cdc.control.setup import setup
from cdc.store.chain import verify_chain
from tests.fix_pg import PgDatabase
from tests.integration.helpers import make_settings

pytestmark = [pytest.mark.integration, pytest.mark.crash, pytest.mark.every_server]

REPO = Path(__file__).resolve().parents[2]

SCHEMA = """
CREATE TABLE public.orders (id bigint PRIMARY KEY, customer bigint, status text, amount numeric);
CREATE TABLE public.items (order_id bigint, line int, sku text, qty int,
                           PRIMARY KEY (order_id, line));
"""


def write_backlog(pg: PgDatabase, rng: random.Random, transactions: int) -> Counter[str]:
    """Committed changes by operation; the ground truth the records must match. A transaction
    that is rolled back counts nothing."""
    expected: Counter[str] = Counter()
    next_id = 1
    live: list[int] = []
    with pg.connect(autocommit=False) as conn:
        for _ in range(transactions):
            pending: Counter[str] = Counter()
            live_after = live
            kind = rng.random()
            if kind < 0.6 or len(live) < 50:
                n = rng.choice([1, 5, 50, 400])
                ids = list(range(next_id, next_id + n))
                next_id += n
                conn.execute(
                    "INSERT INTO orders SELECT g, g %% 97, 'new', g * 1.5 "
                    "FROM unnest(%s::bigint[]) g",
                    (ids,),
                )
                conn.execute(
                    "INSERT INTO items SELECT g, 1, 'sku-' || g, 1 FROM unnest(%s::bigint[]) g",
                    (ids,),
                )
                live_after = live + ids
                pending["insert"] += 2 * n
            elif kind < 0.85:
                chosen = rng.sample(live, min(len(live), rng.choice([1, 20, 200])))
                cur = conn.execute(
                    "UPDATE orders SET status = 'paid', amount = amount + 1 WHERE id = ANY(%s)",
                    (chosen,),
                )
                pending["update"] += cur.rowcount
            else:
                chosen = rng.sample(live, min(len(live), rng.choice([1, 10, 100])))
                cur = conn.execute("DELETE FROM items WHERE order_id = ANY(%s)", (chosen,))
                pending["delete"] += cur.rowcount
                cur = conn.execute("DELETE FROM orders WHERE id = ANY(%s)", (chosen,))
                pending["delete"] += cur.rowcount
                gone = set(chosen)
                live_after = [i for i in live if i not in gone]
            if rng.random() < 0.1:
                conn.execute("INSERT INTO orders VALUES (-1, 0, 'rolled back', 0)")
                conn.rollback()  # the whole transaction: never recorded
            else:
                conn.commit()
                expected += pending
                live = live_after
    return expected


def daemon_command(config: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cdc",
        "--config",
        str(config),
        "--log-level",
        "warning",
        "run",
        *extra,
    ]


def test_daemon_killed_repeatedly_records_every_change_exactly_once(
    pg: PgDatabase, tmp_path: Path
) -> None:
    pg.execute(SCHEMA)
    settings = make_settings(
        pg,
        [{"name": "public.orders"}, {"name": "public.items"}],
        batch={"max_rows": 300, "max_delay_ms": 50},
    )
    setup(settings)
    rng = random.Random(20261126)
    expected = write_backlog(pg, rng, transactions=700)
    assert sum(expected.values()) > 80_000

    config = tmp_path / "cdc.toml"
    config.write_text(
        f"[source]\ndsn = '{pg.dsn}'\nslot = '{pg.slot}'\npublication = '{pg.publication}'\n"
        "[batch]\nmax_rows = 300\nmax_delay_ms = 50\n"
        "[[tables]]\nname = 'public.orders'\n[[tables]]\nname = 'public.items'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    recorded_before = 0
    kills = 0
    progress_between_kills = []
    for attempt in range(10):
        failpoint = attempt in (0, 2, 4)  # these die right after a sink commit, before the ack
        run_env = (
            {**env, "CDC_FAILPOINTS": f"sink.after_commit={rng.randint(1, 4)}"}
            if failpoint
            else env
        )
        proc = subprocess.Popen(
            daemon_command(config),
            env=run_env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if failpoint:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()  # it never reached the failpoint: the test is wrong, not the daemon
                proc.wait()
                raise AssertionError(f"run {attempt} did not reach its failpoint") from None
        else:
            time.sleep(rng.uniform(0.3, 0.9))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        assert proc.returncode == -signal.SIGKILL, f"run {attempt} ended with {proc.returncode}"
        kills += 1
        # the killed daemon's walsender may linger a moment; the next run waits for the slot
        _wait_slot_inactive(pg)
        recorded = pg.execute("SELECT count(*) FROM activity.records")[0][0]
        progress_between_kills.append(recorded - recorded_before)
        recorded_before = recorded

    final = subprocess.run(
        daemon_command(config, "--drain"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stderr
    assert kills == 10
    assert sum(1 for p in progress_between_kills if p > 0) >= 3, progress_between_kills

    by_operation = dict(
        pg.execute("SELECT operation, count(*) FROM activity.records GROUP BY operation")
    )
    assert by_operation == dict(expected)
    # No change recorded twice: each (transaction, table, operation, key) at most once.
    (duplicates,) = pg.execute(
        "SELECT count(*) FROM (SELECT xid, table_name, operation, entity_id FROM activity.records"
        " GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d"
    )[0]
    assert duplicates == 0
    assert (
        pg.execute("SELECT count(*) FROM activity.records WHERE new->>'status' = 'rolled back'")[0][
            0
        ]
        == 0
    )
    # The hash chain survived every kill: one unbroken chain over exactly these records.
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        chain = verify_chain(conn, "activity", "records")
    assert chain.problem is None, chain.problem
    assert chain.checked == sum(expected.values()) and chain.starts_at_genesis
    # Everything recorded is acknowledged: the slot is at (or past) the checkpoint.
    (confirmed_ok,) = pg.execute(
        "SELECT s.confirmed_flush_lsn >= c.end_lsn FROM pg_replication_slots s "
        "JOIN activity.checkpoints c ON c.slot_name = s.slot_name"
    )[0]
    assert confirmed_ok


def _wait_slot_inactive(pg: PgDatabase, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        (active,) = pg.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (pg.slot,)
        )[0]
        if not active:
            return
        time.sleep(0.05)
    raise AssertionError("slot still active after the daemon was killed")
