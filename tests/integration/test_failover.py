"""A failover of the source under load: primary + streaming physical standby, writers, the daemon
streaming through a multi-host DSN; the primary is stopped with ``-m immediate`` and the standby
promoted.

What the records must be afterwards is told by a ledger table written in the same transactions
as the audited changes: the ledger of the promoted server holds exactly the transactions that
survived. On 17+ (failover slot, standby with slot sync, ``synchronized_standby_slots``): 0
missing, 0 duplicated, no record of a change lost with the old primary. Without
``synchronized_standby_slots`` the daemon records changes the standby never received: the test
makes that happen for certain (the standby is stopped while the primary goes on) and shows it.
On 15 and 16 the slot does not exist on the promoted server: the daemon stops and says so, and
``cdc check`` warned before.

The records go to a third server, so that they outlive the failover: what is compared is what
the daemon wrote, not what a failover left of it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from cdc.cli.main import main
from cdc.demo.embedded import EmbeddedPostgres, find_bindir, version_of
from tests.fix_pg import every_server_params
from tests.integration.test_resilience import DaemonProcess

pytestmark = [pytest.mark.integration, pytest.mark.crash]

DB = "app"
PHYSICAL_SLOT = "standby1"
SLOT = "activity_cdc"


def _cases() -> list[Any]:
    cases = []
    for param in every_server_params():
        (bindir,) = param.values
        version = int(version_of(Path(bindir) if bindir else find_bindir()))
        if version >= 17:
            cases.append(pytest.param(bindir, True, id=f"{param.id}-synchronized"))
            cases.append(pytest.param(bindir, False, id=f"{param.id}-unsynchronized"))
        else:
            cases.append(pytest.param(bindir, False, id=f"{param.id}-no-failover-slots"))
    return cases


def wait_for(what: str, predicate: Callable[[], bool], timeout_s: float = 120) -> None:
    """Poll until ``predicate()``; a timeout fails the test naming ``what`` (not a timing
    assertion: the bound only stops a test that would otherwise hang)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def query(dsn: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


class Writers:
    """Transactions until stopped, each: a transfer (audited insert), the account's balance
    (audited update), and the ledger row (not audited). Through the multi-host DSN: after a
    failover they go on on the promoted server."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.next_id = 1
        self.committed = 0
        self.last_error = ""
        self._lock = threading.Lock()

    def __enter__(self) -> Writers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self._dsn, connect_timeout=2)
                with self._lock:
                    transfer = self.next_id
                    self.next_id += 1
                with conn.transaction():
                    conn.execute("INSERT INTO transfers (id, amount) VALUES (%s, 1)", (transfer,))
                    conn.execute(
                        "UPDATE accounts SET balance = balance + 1 WHERE id = %s", (transfer % 5,)
                    )
                    conn.execute("INSERT INTO ledger (transfer_id) VALUES (%s)", (transfer,))
                self.committed += 1
                time.sleep(0.005)
            except psycopg.Error as exc:
                self.last_error = str(exc)
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
                conn = None
                time.sleep(0.2)
        if conn is not None:
            conn.close()


@contextlib.contextmanager
def cluster(**kwargs: Any) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(**kwargs)
    try:
        yield server
    finally:
        server.stop()


def recorded_transfers(sink_dsn: str) -> list[int]:
    return [
        int(row[0])
        for row in query(
            sink_dsn,
            "SELECT entity_id FROM activity.records WHERE table_name = 'transfers' "
            "AND operation = 'insert'",
        )
    ]


def balance_updates(sink_dsn: str) -> int:
    rows = query(
        sink_dsn,
        "SELECT count(*) FROM activity.records WHERE table_name = 'accounts' "
        "AND operation = 'update'",
    )
    return int(rows[0][0])


def cdc(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.mark.parametrize(("bindir", "synchronized"), _cases())
def test_a_failover_under_load_loses_and_duplicates_nothing_with_failover_slots(
    bindir: str | None, synchronized: bool, tmp_path: Path
) -> None:
    binaries = Path(bindir) if bindir else find_bindir()
    version = int(version_of(binaries))
    with (
        cluster(bindir=binaries) as primary,
        cluster(bindir=binaries) as standby,
        cluster() as sink,
    ):
        primary.start()
        sink.start()
        query(primary.dsn, f"CREATE DATABASE {DB}")
        primary_dsn = primary.dsn_for(DB)
        query(
            primary_dsn,
            "CREATE TABLE transfers (id bigint PRIMARY KEY, amount int NOT NULL);"
            "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);"
            "INSERT INTO accounts SELECT g, 0 FROM generate_series(0, 4) g;"
            "CREATE TABLE ledger (transfer_id bigint PRIMARY KEY)",
        )
        query(sink.dsn, f"CREATE DATABASE {DB}")
        sink_dsn = sink.dsn_for(DB)
        source_dsn = (
            f"host=127.0.0.1,127.0.0.1 port={primary.port},{standby.port} user=postgres "
            f"dbname={DB} target_session_attrs=read-write connect_timeout=2"
        )
        config = tmp_path / "cdc.toml"
        config.write_text(
            f"[source]\ndsn = '{source_dsn}'\nslot = '{SLOT}'\npublication = 'activity_cdc'\n"
            f"status_interval_ms = 200\n[sink]\ndsn = '{sink_dsn}'\n"
            "[batch]\nmax_rows = 200\nmax_delay_ms = 20\n"
            "[daemon]\nreconnect_initial_s = 0.2\nreconnect_max_s = 1\n"
            "slot_watch_interval_s = 0\n"
            "[[tables]]\nname = 'public.transfers'\n[[tables]]\nname = 'public.accounts'\n"
        )
        code, out = cdc(config, "setup")
        assert code == 0, out
        failover_slots = version >= 17
        assert ("(pgoutput, failover)" in out) == failover_slots

        query(primary.dsn, f"SELECT pg_create_physical_replication_slot('{PHYSICAL_SLOT}')")
        standby.start_standby_of(
            primary,
            slot=PHYSICAL_SLOT,
            dbname=DB,
            settings={"sync_replication_slots": "on", "hot_standby_feedback": "on"}
            if failover_slots
            else {"hot_standby_feedback": "on"},
        )
        if synchronized:
            query(primary.dsn, f"ALTER SYSTEM SET synchronized_standby_slots = '{PHYSICAL_SLOT}'")
            query(primary.dsn, "SELECT pg_reload_conf()")

        with (
            Writers(source_dsn) as writers,
            contextlib.closing(DaemonProcess(config, tmp_path / "daemon.log")) as daemon,
        ):
            try:
                _fail_over(
                    primary, standby, sink_dsn, config, writers, daemon, version, synchronized
                )
            except BaseException:
                print(f"--- daemon.log ---\n{daemon.output()[-6000:]}")
                print(f"writers: {writers.committed} committed; last error: {writers.last_error}")
                raise


def _fail_over(
    primary: EmbeddedPostgres,
    standby: EmbeddedPostgres,
    sink_dsn: str,
    config: Path,
    writers: Writers,
    daemon: DaemonProcess,
    version: int,
    synchronized: bool,
) -> None:
    standby_dsn = standby.dsn_for(DB)
    wait_for("the first 200 transfers recorded", lambda: len(recorded_transfers(sink_dsn)) >= 200)
    if version >= 17:
        wait_for(
            "the standby's copy of the failover slot",
            lambda: bool(
                query(
                    standby_dsn,
                    "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND synced "
                    "AND NOT temporary",
                    (SLOT,),
                )
            ),
        )
    code, out = cdc(config, "check")
    assert code == 0, out
    if version < 17:
        assert f"PostgreSQL {version} has no failover slots" in out
    else:
        assert f"keeps slot {SLOT} in sync" in out
        assert ("warn synchronized_standby_slots: empty" in out) == (not synchronized)

    # The standby stops receiving; the primary goes on: what it commits now is lost with it.
    standby.stop_server("fast")
    survived_up_to = writers.next_id
    if synchronized:
        # The walsender holds the changes back until the standby has them: it never will.
        wait_for(
            "the walsender to wait for the standby",
            lambda: bool(
                query(
                    primary.dsn,
                    "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'walsender' "
                    "AND wait_event = 'WaitForStandbyConfirmation'",
                )
            ),
        )
    else:
        wait_for(
            "100 transfers the standby never received to be recorded",
            lambda: max(recorded_transfers(sink_dsn), default=0) >= survived_up_to + 100,
        )
    primary.stop_server("immediate")
    standby.start()
    standby.promote()
    if version < 17:
        # No slot on the promoted server: the daemon stops and says what to do.
        assert daemon.proc.wait(120) == 6
        assert f'replication slot "{SLOT}" does not exist' in daemon.output()
        before = writers.committed
        wait_for("50 transfers on the promoted server", lambda: writers.committed >= before + 50)
        writers.stop()
        ledger = {int(row[0]) for row in query(standby_dsn, "SELECT transfer_id FROM ledger")}
        recorded = set(recorded_transfers(sink_dsn))
        # What is lost: every change after the last checkpoint, until a new cdc setup there.
        assert ledger - recorded
        print(f"PostgreSQL {version}: {len(ledger - recorded)} surviving transfers not recorded")
        return

    before = writers.committed
    wait_for("100 transfers on the promoted server", lambda: writers.committed >= before + 100)
    writers.stop()
    # The daemon has everything once the record of a last transaction is there. Without
    # synchronized_standby_slots its checkpoint can be ahead of the promoted server's WAL,
    # which skips transactions until the WAL passes it: write more until one is recorded.
    finals: list[int] = []
    for final in range(writers.next_id + 1000, writers.next_id + 3000, 20):
        with psycopg.connect(standby_dsn, autocommit=True) as conn:
            for transfer in range(final - 19, final + 1):
                with conn.transaction():
                    conn.execute("INSERT INTO transfers VALUES (%s, 0)", (transfer,))
                    conn.execute("INSERT INTO ledger VALUES (%s)", (transfer,))
                finals.append(transfer)
        with contextlib.suppress(AssertionError):
            wait_for(
                "the last transfer recorded",
                lambda final=final: final in recorded_transfers(sink_dsn),  # type: ignore[misc]
                timeout_s=60 if synchronized else 5,
            )
            break
    assert final in recorded_transfers(sink_dsn)
    assert daemon.stop() == 0

    ledger = {int(row[0]) for row in query(standby_dsn, "SELECT transfer_id FROM ledger")}
    recorded_list = recorded_transfers(sink_dsn)
    recorded = set(recorded_list)
    assert len(recorded_list) == len(recorded), "a transfer was recorded twice"
    lost_but_recorded = recorded - ledger
    missing = ledger - recorded
    if synchronized:
        assert missing == set()
        assert lost_but_recorded == set()
        # every surviving transaction's balance update too, once (the final ones have none)
        assert balance_updates(sink_dsn) == len(ledger) - len(finals)
    else:
        # Recorded, though the new primary never had them: lost with the old primary.
        assert len(lost_but_recorded) >= 100
        print(
            f"PostgreSQL {version} without synchronized_standby_slots: "
            f"{len(lost_but_recorded)} records of transfers lost with the old primary, "
            f"{len(missing)} surviving transfers not recorded"
        )
