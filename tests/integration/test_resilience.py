"""A daemon you can run for years: reconnects after server restarts, a hot standby that takes
over from a killed daemon, an idle slot that still advances, heartbeats, exact metrics, and
SIGHUP reloads. Daemons are real ``cdc run`` processes; servers that are restarted are the
test's own (``EmbeddedPostgres``), so the shared session server is never disturbed.

Every change a writer committed must be recorded exactly once. Commits that were in flight
when a server went down are ambiguous to the writer, so the ground truth is what the source
table holds at the end (a commit the server lost is in neither the table nor the stream).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdc.config import Settings, settings_from_mapping
from cdc.control.setup import setup
from cdc.control.slot_watch import CRITICAL, LOST, OK, WARNING, SlotWatcher
from cdc.demo.embedded import EmbeddedPostgres, free_port
from cdc.lsn import Lsn
from cdc.metrics import Metrics
from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain

pytestmark = [pytest.mark.integration, pytest.mark.crash]

REPO = Path(__file__).resolve().parents[2]

EVENTS = "CREATE TABLE public.events (id bigint PRIMARY KEY, batch int NOT NULL, note text)"
INSERT_EVENTS = (
    "INSERT INTO public.events SELECT g, %s, 'n' FROM generate_series(%s::bigint, %s::bigint) g"
)


# -- helpers -----------------------------------------------------------------------------------


def wait_for(what: str, predicate: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    """Poll until ``predicate()`` is truthy; its value. Fails saying what never happened."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g}s (last: {value!r})")
        time.sleep(0.05)


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def slot_state(dsn: str, slot: str) -> tuple[bool, int | None, str]:
    active, pid, confirmed = query(
        dsn,
        "SELECT active, active_pid, confirmed_flush_lsn::text FROM pg_replication_slots "
        "WHERE slot_name = %s",
        (slot,),
    )[0]
    return active, pid, confirmed


def write_config(path: Path, dsn: str, slot: str, publication: str, body: str) -> Path:
    path.write_text(
        f"[source]\ndsn = '{dsn}'\nslot = '{slot}'\npublication = '{publication}'\n{body}"
    )
    return path


class DaemonProcess:
    """``cdc run`` as a subprocess; its log goes to a file (a full pipe would block it)."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        self.log = log
        self._log_handle = log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cdc",
                "--config",
                str(config),
                "--log-level",
                "info",
                "run",
                *args,
            ],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=config.parent,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
        )

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._log_handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def daemon_process(config: Path, log: Path, *args: str) -> Iterator[DaemonProcess]:
    process = DaemonProcess(config, log, *args)
    try:
        yield process
    except BaseException:
        print(f"--- {log.name} ---\n{process.output()[-6000:]}")  # shown with the failure
        raise
    finally:
        process.close()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:  # not listening yet
        return 0, str(exc)


class Writer:
    """Inserts rows with unique ids, a few per transaction, until stopped; rides out server
    restarts by reconnecting. ``committed`` counts commits it saw succeed."""

    def __init__(self, dsn: str, *, pause_s: float = 0.002) -> None:
        self._dsn = dsn
        self._pause_s = pause_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.committed = 0
        self.failures = 0

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        next_id = 0  # after the rows already there: read at the first connection
        batch = 0
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self._dsn, connect_timeout=2)
                    if not next_id:
                        cur = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM public.events")
                        next_id = cur.fetchall()[0][0]
                batch += 1
                rows = 1 + batch % 7
                conn.execute(INSERT_EVENTS, (batch, next_id, next_id + rows - 1))
                next_id += rows  # ids are never reused, even when the commit's fate is unknown
                conn.commit()
                self.committed += 1
            except psycopg.Error:
                self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.1)
                continue
            self._stop.wait(self._pause_s)
        if conn is not None:
            conn.close()


def assert_every_event_recorded_exactly_once(dsn: str) -> int:
    """Each row of public.events has exactly one insert record, and nothing else is recorded."""
    (rows,) = query(dsn, "SELECT count(*) FROM public.events")[0]
    (records, distinct, inserts) = query(
        dsn,
        "SELECT count(*), count(DISTINCT entity_id), count(*) FILTER (WHERE operation = 'insert')"
        "  FROM activity.records",
    )[0]
    (missing,) = query(
        dsn,
        "SELECT count(*) FROM public.events e WHERE NOT EXISTS (SELECT 1 FROM activity.records r"
        " WHERE r.table_name = 'events' AND r.entity_id = e.id::text)",
    )[0]
    assert (records, distinct, inserts, missing) == (rows, rows, rows, 0)
    return int(rows)


def settings_for(dsn: str, slot: str, publication: str, tables: list[dict[str, Any]]) -> Settings:
    return settings_from_mapping(
        {
            "source": {"dsn": dsn, "slot": slot, "publication": publication},
            "batch": {"max_rows": 500, "max_delay_ms": 20},
            "tables": tables,
        },
        env={},
    )


# -- reconnects ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_daemon_reconnects_after_the_server_restarts_mid_stream_and_loses_nothing(
    mode: str, tmp_path: Path
) -> None:
    with EmbeddedPostgres() as server:
        dsn = server.dsn
        query(dsn, EVENTS)
        settings = settings_for(dsn, "resilience", "resilience", [{"name": "public.events"}])
        setup(settings)
        port = free_port()
        config = write_config(
            tmp_path / "cdc.toml",
            dsn,
            "resilience",
            "resilience",
            "[batch]\nmax_rows = 200\nmax_delay_ms = 50\n"
            "[daemon]\nreconnect_initial_s = 0.2\nreconnect_max_s = 2\n"
            f"[metrics]\nport = {port}\n"
            "[[tables]]\nname = 'public.events'\n",
        )
        recorded = lambda: query(dsn, "SELECT count(*) FROM activity.records")[0][0]  # noqa: E731
        with daemon_process(config, tmp_path / "daemon.log") as daemon, Writer(dsn) as writer:
            wait_for("the daemon records the writer's rows", lambda: recorded() > 50)
            for restart in range(2):
                server.restart(mode)
                # counted once the server is back: growth past it is the reconnected daemon's,
                # not batches that committed between a count and the restart
                before = recorded()
                wait_for(
                    f"records grow again after restart {restart + 1} ({mode})",
                    lambda before=before: recorded() > before + 50,
                    timeout_s=90,
                )
            writer.stop()
            samples = scrape(port)
            assert daemon.stop() == 0, daemon.output()
        assert writer.committed > 100 and writer.failures >= 2
        assert samples[("activity_cdc_reconnects_total", ())] >= 2, daemon.output()
        errors = {
            dict(labels)["kind"]: value
            for (name, labels), value in samples.items()
            if name == "activity_cdc_errors_total" and value > 0
        }
        # whichever connection noticed first: the replication one or the sink's (every kind is
        # exported from 0, so only the kinds that counted something are compared)
        assert sum(errors.values()) >= 2 and set(errors) <= {"ConnectError", "SinkError"}, errors
        assert "reconnecting in" in daemon.output()
        drain(settings)  # whatever the stop left in flight
        assert assert_every_event_recorded_exactly_once(dsn) > 200
        query(dsn, "SELECT pg_drop_replication_slot('resilience')")


def test_sessions_ended_every_few_milliseconds_never_stop_the_daemon_and_lose_nothing(
    tmp_path: Path,
) -> None:
    """Every session of the daemon (its walsender, its sink, its control connections) ended by
    the server at random moments, 5-300 ms apart, for 20 s, while a writer commits: each is a
    reconnect, whatever the daemon was doing (opening, streaming, writing, committing); the
    process never exits on its own, and every event is recorded exactly once."""
    with EmbeddedPostgres() as server:
        dsn = server.dsn
        query(dsn, EVENTS)
        settings = settings_for(dsn, "ended", "ended", [{"name": "public.events"}])
        setup(settings)
        config = write_config(
            tmp_path / "cdc.toml",
            dsn,
            "ended",
            "ended",
            "[batch]\nmax_rows = 200\nmax_delay_ms = 50\n"
            "[daemon]\nreconnect_initial_s = 0.05\nreconnect_max_s = 0.3\n"
            "[[tables]]\nname = 'public.events'\n",
        )
        stop = threading.Event()
        ended: list[int] = []

        def end_sessions() -> None:
            rng = random.Random(5)
            with psycopg.connect(dsn, autocommit=True) as admin:
                while not stop.wait(rng.uniform(0.005, 0.3)):
                    row = admin.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name LIKE 'activity-cdc%%'"
                    ).fetchone()
                    ended.append(int(row[0]) if row else 0)

        with daemon_process(config, tmp_path / "daemon.log") as daemon, Writer(dsn) as writer:
            ender = threading.Thread(target=end_sessions)
            ender.start()
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and daemon.proc.poll() is None:
                    time.sleep(0.2)
            finally:
                stop.set()
                ender.join()
            writer.stop()
            assert daemon.proc.poll() is None, daemon.output()[-3000:]  # still running
            assert daemon.stop() == 0, daemon.output()[-3000:]
        assert sum(ended) > 40 and writer.committed > 100
        assert "unexpected internal error" not in daemon.output()
        drain(settings)
        assert assert_every_event_recorded_exactly_once(dsn) > 100


# -- hot standby ---------------------------------------------------------------------------------


def test_standby_takes_over_when_the_active_daemon_is_killed_and_records_everything_once(
    pg: PgDatabase, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    pg.execute(EVENTS)
    settings = settings_for(pg.dsn, pg.slot, pg.publication, [{"name": "public.events"}])
    setup(settings)
    ports = free_port(), free_port()
    configs = [
        write_config(
            tmp_path / f"cdc-{name}.toml",
            pg.dsn,
            pg.slot,
            pg.publication,
            "[batch]\nmax_rows = 200\nmax_delay_ms = 50\n"
            "[daemon]\nstandby_retry_s = 1\nheartbeat_interval_s = 0.2\n"
            f"[metrics]\nport = {port}\n[[tables]]\nname = 'public.events'\n",
        )
        for name, port in zip("ab", ports, strict=True)
    ]
    recorded = lambda: pg.execute("SELECT count(*) FROM activity.records")[0][0]  # noqa: E731
    with (
        contextlib.ExitStack() as stack,
        Writer(pg.dsn) as writer,
        daemon_process(configs[0], tmp_path / "a.log") as active,
    ):
        _, active_walsender, _ = wait_for(
            "the first daemon streams", lambda: (s := slot_state(pg.dsn, pg.slot))[0] and s
        )
        standby = stack.enter_context(daemon_process(configs[1], tmp_path / "b.log"))
        wait_for(
            "the second daemon says it is a standby",
            lambda: (r := readyz(ports[1]))[0] == 503 and "standby" in r[1],
        )
        wait_for("records arrive", lambda: recorded() > 100)
        assert scrape(ports[0])[("activity_cdc_heartbeats_sent_total", ())] > 0
        assert scrape(ports[1])[("activity_cdc_heartbeats_sent_total", ())] == 0  # standby: quiet
        assert scrape(ports[1])[("activity_cdc_standby", ())] == 1

        active.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        _, new_walsender, _ = wait_for(
            "the standby takes the slot",
            lambda: (s := slot_state(pg.dsn, pg.slot))[0] and s[1] != active_walsender and s,
            timeout_s=120,
        )
        takeover_s = time.monotonic() - killed_at
        wait_for("the new daemon is ready", lambda: readyz(ports[1])[0] == 200)
        before = recorded()
        wait_for("the new daemon records", lambda: recorded() > before + 50)
        wait_for(
            "the new daemon sends heartbeats",
            lambda: scrape(ports[1])[("activity_cdc_heartbeats_sent_total", ())] > 0,
        )
        assert scrape(ports[1])[("activity_cdc_standby", ())] == 0
        writer.stop()
        assert active.proc.wait(30) == -signal.SIGKILL
        assert standby.stop() == 0, standby.output()

    record_property("takeover_seconds", round(takeover_s, 2))
    print(f"standby took over {takeover_s:.2f}s after SIGKILL of the active daemon")
    assert takeover_s < 120
    assert new_walsender != active_walsender
    assert "standby: slot" in standby.output() and "taking over" in standby.output()
    drain(settings)
    assert assert_every_event_recorded_exactly_once(pg.dsn) > 200


def test_a_frozen_daemon_loses_the_slot_at_wal_sender_timeout_and_comes_back_as_standby(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """SIGSTOP stands for a lost host: no FIN reaches the server, so the walsender only ends
    at wal_sender_timeout (3 s here, 60 s by default); the standby takes over then."""
    with EmbeddedPostgres(settings={"wal_sender_timeout": "3s"}) as server:
        dsn = server.dsn
        query(dsn, EVENTS)
        settings = settings_for(dsn, "frozen", "frozen", [{"name": "public.events"}])
        setup(settings)
        ports = free_port(), free_port()
        configs = [
            write_config(
                tmp_path / f"cdc-{name}.toml",
                dsn,
                "frozen",
                "frozen",
                "status_interval_ms = 1000\n[batch]\nmax_rows = 200\nmax_delay_ms = 50\n"
                "[daemon]\nstandby_retry_s = 0.5\nreconnect_initial_s = 0.2\n"
                f"[metrics]\nport = {port}\n[[tables]]\nname = 'public.events'\n",
            )
            for name, port in zip("ab", ports, strict=True)
        ]
        rows = lambda: query(dsn, "SELECT count(*) FROM public.events")[0][0]  # noqa: E731
        recorded = lambda: query(dsn, "SELECT count(*) FROM activity.records")[0][0]  # noqa: E731
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(daemon_process(configs[0], tmp_path / "a.log"))
            _, first_walsender, _ = wait_for(
                "the first daemon streams", lambda: (s := slot_state(dsn, "frozen"))[0] and s
            )
            second = stack.enter_context(daemon_process(configs[1], tmp_path / "b.log"))
            wait_for("the second is a standby", lambda: "standby" in readyz(ports[1])[1])
            with Writer(dsn):
                wait_for("records arrive", lambda: recorded() > 100)
            # frozen between batches: no sink transaction of its own stays open
            wait_for("the first daemon caught up", lambda: recorded() == rows())
            first.signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            try:
                with Writer(dsn):
                    wait_for(
                        "the standby takes the slot",
                        lambda: (s := slot_state(dsn, "frozen"))[0] and s[1] != first_walsender,
                        timeout_s=60,
                    )
                    takeover_s = time.monotonic() - frozen_at
                    before = recorded()
                    wait_for("the new daemon records", lambda: recorded() > before + 50)
            finally:
                first.signal(signal.SIGCONT)
            wait_for("the thawed daemon waits as a standby", lambda: readyz(ports[0])[0] == 503)
            wait_for("the thawed daemon says so", lambda: "standby: slot" in first.output())
            wait_for("everything is recorded", lambda: recorded() == rows())
            assert second.stop() == 0, second.output()
            assert first.stop() == 0, first.output()
        record_property("takeover_after_freeze_seconds", round(takeover_s, 2))
        print(f"standby took over {takeover_s:.2f}s after the active daemon froze")
        assert 1 < takeover_s < 60
        drain(settings)
        assert assert_every_event_recorded_exactly_once(dsn) > 100
        query(dsn, "SELECT pg_drop_replication_slot('frozen')")


def test_sigterm_in_standby_or_during_a_backoff_exits_zero_at_once(
    pg: PgDatabase, tmp_path: Path
) -> None:
    pg.execute(EVENTS)
    setup(settings_for(pg.dsn, pg.slot, pg.publication, [{"name": "public.events"}]))
    holder = psycopg.connect(pg.dsn, replication="database", autocommit=True)
    try:
        holder.execute(
            f"START_REPLICATION SLOT \"{pg.slot}\" LOGICAL 0/0 (proto_version '1', "
            f"publication_names '\"{pg.publication}\"')"
        )
        port = free_port()
        standby_config = write_config(
            tmp_path / "standby.toml",
            pg.dsn,
            pg.slot,
            pg.publication,
            f"[metrics]\nport = {port}\n[[tables]]\nname = 'public.events'\n",
        )
        with daemon_process(standby_config, tmp_path / "standby.log") as standby:
            wait_for("it waits as a standby", lambda: "standby" in readyz(port)[1])
            stopped_at = time.monotonic()
            assert standby.stop() == 0, standby.output()
            assert time.monotonic() - stopped_at < 10
    finally:
        holder.close()

    unreachable = "host=127.0.0.1 port=1 dbname=x user=u connect_timeout=2"
    backoff_config = write_config(
        tmp_path / "backoff.toml",
        unreachable,
        pg.slot,
        pg.publication,
        "[daemon]\nreconnect_initial_s = 60\nreconnect_max_s = 60\nslot_watch_interval_s = 0\n"
        "[[tables]]\nname = 'public.events'\n",
    )
    with daemon_process(backoff_config, tmp_path / "backoff.log") as retrying:
        wait_for(
            "it retries the refused connection", lambda: "reconnecting in" in retrying.output()
        )
        stopped_at = time.monotonic()
        assert retrying.stop() == 0, retrying.output()
        assert time.monotonic() - stopped_at < 10
    assert "Connection refused" in retrying.output()


# -- an idle slot, heartbeats ------------------------------------------------------------------


def idle_config(pg: PgDatabase, tmp_path: Path, port: int, daemon: str = "") -> Path:
    pg.execute(EVENTS + "; CREATE TABLE public.noise (id serial PRIMARY KEY, v text)")
    setup(settings_for(pg.dsn, pg.slot, pg.publication, [{"name": "public.events"}]))
    return write_config(
        tmp_path / "cdc.toml",
        pg.dsn,
        pg.slot,
        pg.publication,
        "status_interval_ms = 200\n"  # still in [source]
        f"[metrics]\nport = {port}\n[daemon]\n{daemon}\n[[tables]]\nname = 'public.events'\n",
    )


def test_an_idle_slot_advances_with_wal_from_unpublished_tables(
    pg: PgDatabase, tmp_path: Path
) -> None:
    config = idle_config(pg, tmp_path, free_port())
    with daemon_process(config, tmp_path / "daemon.log") as daemon:
        wait_for("the daemon streams", lambda: slot_state(pg.dsn, pg.slot)[0])
        start = Lsn.parse(slot_state(pg.dsn, pg.slot)[2])
        for _ in range(20):
            pg.execute("INSERT INTO public.noise (v) SELECT 'x' FROM generate_series(1, 100)")
        (after_noise,) = pg.execute("SELECT pg_current_wal_insert_lsn()::text")[0]
        wait_for(
            "the slot confirms past the unpublished writes",
            lambda: Lsn.parse(slot_state(pg.dsn, pg.slot)[2]) >= Lsn.parse(after_noise),
        )
        assert daemon.stop() == 0, daemon.output()
    assert Lsn.parse(after_noise) > start
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 0


def test_heartbeats_on_a_quiet_database_move_the_slot(pg: PgDatabase, tmp_path: Path) -> None:
    port = free_port()
    config = idle_config(pg, tmp_path, port, "heartbeat_interval_s = 0.2")
    with daemon_process(config, tmp_path / "daemon.log") as daemon:
        wait_for("the daemon streams", lambda: slot_state(pg.dsn, pg.slot)[0])
        wait_for(
            "heartbeats are sent",
            lambda: scrape(port).get(("activity_cdc_heartbeats_sent_total", ()), 0) >= 3,
        )
        (after,) = pg.execute("SELECT pg_current_wal_insert_lsn()::text")[0]
        wait_for(
            "the slot confirms past the heartbeats",
            lambda: Lsn.parse(slot_state(pg.dsn, pg.slot)[2]) >= Lsn.parse(after),
        )
        assert daemon.stop() == 0, daemon.output()
    assert "heartbeat failed" not in daemon.output()
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 0


def test_heartbeat_latency_is_measured_end_to_end_on_a_quiet_database(
    pg: PgDatabase, tmp_path: Path
) -> None:
    port = free_port()
    config = idle_config(pg, tmp_path, port, "heartbeat_interval_s = 0.2")
    with daemon_process(config, tmp_path / "daemon.log") as daemon:
        wait_for("the daemon streams", lambda: slot_state(pg.dsn, pg.slot)[0])
        samples = wait_for(
            "heartbeats are received",
            lambda: (
                (s := scrape(port)).get(("activity_cdc_heartbeats_received_total", ()), 0) >= 2
                and s
            ),
            timeout_s=20,
        )
        assert daemon.stop() == 0, daemon.output()
    latency = samples[("activity_cdc_heartbeat_latency_seconds", ())]
    assert 0 < latency < 30


def test_slot_watch_grades_a_growing_backlog_from_warning_to_critical_to_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No daemon reads the slot; the watcher samples it while WAL piles up on a server with
    max_slot_wal_keep_size = 64MB. No checkpoint runs on its own (max_wal_size 1GB, timeout
    1h), so the slot stays unreserved until the test's CHECKPOINT invalidates it."""
    step = "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g"
    limits = {
        "max_wal_size": "1GB",
        "checkpoint_timeout": "1h",
        "max_slot_wal_keep_size": "64MB",
    }
    metrics = Metrics()
    gauge = lambda: metrics.registry.get_sample_value(  # noqa: E731
        "activity_cdc_slot_retention_warning"
    )
    with (
        EmbeddedPostgres(settings=limits) as server,
        psycopg.connect(server.dsn, autocommit=True) as conn,
    ):
        conn.execute("SELECT pg_create_logical_replication_slot('watched', 'pgoutput')")
        conn.execute("CREATE TABLE big (id int, v text)")
        watcher = SlotWatcher(server.dsn, "watched", 30, metrics=metrics, warn_fraction=0.8)
        try:
            grades = [watcher.check_once()]
            while grades[-1] is not None and grades[-1].level < WARNING:
                assert len(grades) < 80, "the slot never reached 80% of 64 MB"
                conn.execute(step)
                grades.append(watcher.check_once())
            assert gauge() == WARNING
            retained = metrics.registry.get_sample_value("activity_cdc_slot_retained_bytes")
            assert retained is not None and 0.8 * 64 * 2**20 <= retained <= 64 * 2**20
            critical = grades[-1]
            while critical is not None and critical.level < CRITICAL:
                assert len(grades) < 120, "the slot never went past 64 MB"
                conn.execute(step)
                critical = watcher.check_once()
                grades.append(critical)
            assert critical is not None and critical.level == CRITICAL, critical
            assert gauge() == CRITICAL
            conn.execute("CHECKPOINT")  # the server removes the WAL: the slot is lost
            lost = watcher.check_once()
            assert lost is not None and lost.level == LOST and gauge() == LOST
        finally:
            watcher.stop()
    assert {grade.level for grade in grades if grade is not None} >= {OK, WARNING}
    messages = [r.getMessage() for r in caplog.records if r.name == "cdc.slot_watch"]
    assert any("% of max_slot_wal_keep_size 64.0 MB" in m for m in messages), messages
    assert any("wal_status unreserved" in m and "next checkpoint" in m for m in messages)
    assert any("is invalidated (wal_status lost)" in m for m in messages)
    assert not any("unlimited" in m for m in messages)  # the limit is set


# -- metrics after a known workload ------------------------------------------------------------


def test_metrics_count_exactly_the_records_written_and_the_flushed_lsn_is_the_slots(
    pg: PgDatabase, tmp_path: Path
) -> None:
    pg.execute(
        "CREATE TABLE public.accounts (id int PRIMARY KEY, v text);"
        "CREATE TABLE public.orders (id int PRIMARY KEY, v text)"
    )
    tables = [{"name": "public.accounts"}, {"name": "public.orders"}]
    setup(settings_for(pg.dsn, pg.slot, pg.publication, tables))
    port = free_port()
    config = write_config(
        tmp_path / "cdc.toml",
        pg.dsn,
        pg.slot,
        pg.publication,
        "status_interval_ms = 200\n[batch]\nmax_rows = 7\nmax_delay_ms = 20\n"
        f"[metrics]\nport = {port}\n"
        "[[tables]]\nname = 'public.accounts'\n[[tables]]\nname = 'public.orders'\n",
    )
    with daemon_process(config, tmp_path / "daemon.log") as daemon:
        wait_for("the daemon streams", lambda: slot_state(pg.dsn, pg.slot)[0])
        with pg.connect() as conn:
            conn.execute("INSERT INTO accounts SELECT g, 'a' FROM generate_series(1, 30) g")
            for i in range(1, 11):
                conn.execute("UPDATE accounts SET v = 'b' WHERE id = %s", (i,))
            conn.execute("DELETE FROM accounts WHERE id > 25")
            conn.execute("INSERT INTO orders SELECT g, 'o' FROM generate_series(1, 12) g")
            conn.execute("UPDATE orders SET v = 'p' WHERE id <= 4")
        wait_for(
            "all 61 records are written",
            lambda: pg.execute("SELECT count(*) FROM activity.records")[0][0] == 61,
        )
        # and acknowledged: the daemon acknowledges what a publication check (at most one a
        # second) has verified, so the slot may follow the records by up to a second
        wait_for(
            "the slot is acknowledged through the checkpoint",
            lambda: (
                Lsn.parse(slot_state(pg.dsn, pg.slot)[2])
                >= Lsn.parse(pg.execute("SELECT end_lsn::text FROM activity.checkpoints")[0][0])
            ),
        )

        def consistent() -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], int]:
            """A scrape whose flushed LSN matches the slot before and after it."""
            before = Lsn.parse(slot_state(pg.dsn, pg.slot)[2])
            samples = scrape(port)
            after = Lsn.parse(slot_state(pg.dsn, pg.slot)[2])
            flushed = int(samples[("activity_cdc_flushed_lsn", ())])
            return (samples, flushed) if before == after == flushed else ({}, 0)

        samples, flushed = wait_for("the flushed LSN matches the slot's", consistent)
        assert daemon.stop() == 0, daemon.output()

    records = {
        dict(labels)["table"] + " " + dict(labels)["operation"]: value
        for (name, labels), value in samples.items()
        if name == "activity_cdc_records_total"
    }
    assert records == {
        "public.accounts insert": 30,
        "public.accounts update": 10,
        "public.accounts delete": 5,
        "public.orders insert": 12,
        "public.orders update": 4,
    }
    assert samples[("activity_cdc_batch_rows_sum", ())] == 61
    assert samples[("activity_cdc_streaming", ())] == 1
    (checkpoint_end,) = pg.execute("SELECT end_lsn::text FROM activity.checkpoints")[0]
    assert flushed >= Lsn.parse(checkpoint_end)


# -- SIGHUP ------------------------------------------------------------------------------------


def test_a_quiet_stream_writes_a_commit_at_once_without_waiting_for_max_delay(
    pg: PgDatabase, tmp_path: Path
) -> None:
    # max_delay_ms of ten minutes: only the idle rule can write these records (that batches
    # still grow while the sink is busy is the batcher's, tests/unit/test_batching_state.py).
    pg.execute("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
    setup(settings_for(pg.dsn, pg.slot, pg.publication, [{"name": "public.t"}]))
    body = "[batch]\nmax_rows = 5000\nmax_delay_ms = 600000\n[[tables]]\nname = 'public.t'\n"
    config = write_config(tmp_path / "cdc.toml", pg.dsn, pg.slot, pg.publication, body)
    count = lambda: query(pg.dsn, "SELECT count(*) FROM activity.records")[0][0]  # noqa: E731
    with daemon_process(config, tmp_path / "daemon.log") as daemon:
        wait_for("the daemon streams", lambda: slot_state(pg.dsn, pg.slot)[0])
        for n in (1, 2):
            pg.execute("INSERT INTO t VALUES (%s, 'x')", (n,))
            started = time.monotonic()
            wait_for(f"record {n}", lambda n=n: count() == n, timeout_s=20)
            assert time.monotonic() - started < 5, "written when the stream went quiet"
        assert daemon.stop() == 0, daemon.output()


def test_sighup_reloads_batch_settings_and_mapping_rules_for_later_changes(
    pg: PgDatabase, tmp_path: Path
) -> None:
    pg.execute("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
    setup(settings_for(pg.dsn, pg.slot, pg.publication, [{"name": "public.t"}]))

    def config_body(max_delay_ms: int, category: str) -> str:
        return (
            f"status_interval_ms = 500\n[batch]\nmax_rows = 1000\nmax_delay_ms = {max_delay_ms}\n"
            "flush_when_idle = false\n"
            f"[[tables]]\nname = 'public.t'\ncategory = '{category}'\n"
        )

    config = write_config(
        tmp_path / "cdc.toml", pg.dsn, pg.slot, pg.publication, config_body(600_000, "before")
    )
    categories = lambda: dict(  # noqa: E731
        pg.execute("SELECT entity_id, category FROM activity.records ORDER BY entity_id")
    )
    with daemon_process(config, tmp_path / "daemon.log") as daemon:
        wait_for("the daemon streams", lambda: slot_state(pg.dsn, pg.slot)[0])
        pg.execute("INSERT INTO t VALUES (1, 'x')")
        time.sleep(1.5)  # received and mapped, but the 10-minute batch delay holds it back
        assert categories() == {}
        write_config(config, pg.dsn, pg.slot, pg.publication, config_body(20, "after"))
        daemon.signal(signal.SIGHUP)
        wait_for("the held batch is written with the new delay", categories, timeout_s=30)
        pg.execute("INSERT INTO t VALUES (2, 'y')")
        wait_for("the next change is written", lambda: len(categories()) == 2, timeout_s=30)
        assert daemon.stop() == 0, daemon.output()
    assert categories() == {"1": "before", "2": "after"}
    assert "configuration reloaded" in daemon.output()
    assert "reload refused" not in daemon.output()
