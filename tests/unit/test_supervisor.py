"""cdc.supervisor (backoff, which errors are retried, standby), the heartbeat's message and the
slot watcher's grades: no database; daemons, clock, randomness and waits are injected."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from cdc.config import Settings, settings_from_mapping
from cdc.control.heartbeat import heartbeat_content
from cdc.control.slot_watch import CRITICAL, LOST, OK, WARNING, SlotSample, judge
from cdc.errors import (
    CdcError,
    ConfigError,
    ConnectError,
    DecodeError,
    PrerequisiteError,
    PublicationNotFound,
    SinkError,
    SlotInUse,
    SlotInvalidated,
    SlotNotFound,
    StreamError,
)
from cdc.metrics import Metrics
from cdc.pipeline.loop import RunStats
from cdc.retry import Backoff, is_connection_loss
from cdc.service.supervisor import Supervisor

GiB = 1024**3
MiB = 1024**2


def settings(**daemon: Any) -> Settings:
    return settings_from_mapping(
        {
            "source": {"dsn": "host=db.invalid dbname=app", "slot": "s"},
            "daemon": {"reconnect_initial_s": 0.5, "reconnect_max_s": 30, **daemon},
            "tables": [{"name": "public.t", "category": "before"}],
        },
        env={},
    )


# -- backoff ---------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_from_the_initial_delay_up_to_the_maximum() -> None:
    backoff = Backoff(0.5, 30, random=lambda: 0.999999)
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays == pytest.approx([0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30], rel=1e-5)


def test_backoff_is_full_jitter_a_uniform_fraction_of_the_ceiling() -> None:
    draws = iter([0.0, 0.5, 0.25, 0.75])
    backoff = Backoff(1, 100, random=lambda: next(draws))
    assert [backoff.next_delay() for _ in range(4)] == [0.0, 1.0, 1.0, 6.0]


def test_backoff_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(0.5, 30, random=lambda: 0.5)
    for _ in range(8):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.25


def test_backoff_survives_a_very_long_outage_without_overflow() -> None:
    backoff = Backoff(0.5, 30, random=lambda: 0.5)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 15


# -- which errors are a lost connection --------------------------------------------------------


def raised_from(error: CdcError, cause: BaseException) -> CdcError:
    """The error as our modules raise it: ``raise error from None`` inside ``except cause``."""
    try:
        try:
            raise cause
        except BaseException:
            raise error from None
    except CdcError as exc:
        return exc


REFUSED = psycopg.OperationalError(
    'connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection '
    "refused\n\tIs the server running on that host and accepting TCP/IP connections?"
)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (raised_from(ConnectError("cannot connect"), REFUSED), True),
        (ConnectError("replication connection lost: server closed the connection"), True),
        (
            raised_from(SinkError("cannot read the checkpoint"), psycopg.errors.AdminShutdown()),
            True,
        ),
        (SinkError("could not write 5 records: terminating [SQLSTATE 57P01]; nothing …"), True),
        (SinkError("could not write 5 records: read-only [SQLSTATE 25006]"), True),
        (
            ConnectError(
                'cannot connect to the source database: connection to server at "db" failed: '
                "FATAL:  the database system is starting up"
            ),
            True,
        ),
        (
            ConnectError(
                'cannot connect to the source database: connection to server at "db" failed: '
                'FATAL:  password authentication failed for user "cdc"'
            ),
            False,
        ),
        (
            raised_from(
                ConnectError("cannot connect"),
                psycopg.OperationalError('failed: FATAL:  database "nope" does not exist'),
            ),
            False,
        ),
        (SinkError("could not write 5 records: duplicate key [SQLSTATE 23505]"), False),
        (SinkError("unexpected sink failure: KeyError('x')"), False),
        (
            StreamError("the server ended the replication stream: WAL removed (SQLSTATE 58P01)"),
            False,
        ),
        (psycopg.OperationalError("consuming input failed: server closed the connection"), True),
    ],
    ids=[
        "connection-refused",
        "stream-ended",
        "sink-admin-shutdown-as-context",
        "sink-admin-shutdown-in-text",
        "sink-read-only-after-failover",
        "server-starting-up",
        "wrong-password",
        "unknown-database",
        "sink-duplicate-key",
        "sink-bug",
        "wal-removed",
        "raw-driver-connection-loss",
    ],
)
def test_only_a_lost_or_unavailable_connection_counts_as_transient(
    error: BaseException, expected: bool
) -> None:
    assert is_connection_loss(error) is expected


# -- the supervisor with scripted daemons ------------------------------------------------------


@dataclass
class FakeDaemon:
    """One attempt: raises ``outcome`` (an exception) or returns; ``runs_for_s`` of fake time."""

    outcome: BaseException | None
    clock: FakeClock
    runs_for_s: float = 0.0
    settings: Settings | None = None
    stats: RunStats = field(default_factory=RunStats)
    stop_requested: bool = False
    reloaded: list[Settings] = field(default_factory=list)
    closed: bool = False
    during_run: Callable[[], None] | None = None

    def run(self) -> RunStats:
        self.clock.now += self.runs_for_s
        self.stats.records += 10
        if self.during_run is not None:
            self.during_run()
        if self.outcome is not None:
            raise self.outcome
        return self.stats

    def request_stop(self) -> None:
        self.stop_requested = True

    def reload(self, settings: Settings) -> list[str]:
        self.reloaded.append(settings)
        return []

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A supervisor whose daemons follow a script, whose waits are recorded (and take fake
    time), and whose standby probe answers from a list."""

    def __init__(
        self,
        script: list[BaseException | tuple[BaseException | None, float] | None],
        *,
        probe: list[int | None] | None = None,
        stop_on_wait: int | None = None,
        **daemon_settings: Any,
    ) -> None:
        self.clock = FakeClock()
        self.metrics = Metrics()
        self.waits: list[float] = []
        self.daemons: list[FakeDaemon] = []
        self._script = iter(script)
        self._probe = iter(probe or [])
        self._stop_on_wait = stop_on_wait
        self.supervisor = Supervisor(
            settings(**daemon_settings),
            metrics=self.metrics,
            daemon_factory=self._make,
            clock=self.clock,
            random=lambda: 0.5,
            wait=self._wait,
            slot_probe=lambda: next(self._probe),
        )

    def _make(self, settings: Settings, metrics: Metrics | None) -> FakeDaemon:
        step = next(self._script)
        outcome, runs_for_s = step if isinstance(step, tuple) else (step, 0.0)
        daemon = FakeDaemon(outcome, self.clock, runs_for_s, settings)
        self.daemons.append(daemon)
        return daemon

    def _wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.clock.now += seconds
        if self._stop_on_wait is not None and len(self.waits) >= self._stop_on_wait:
            self.supervisor.request_stop()
        return self.supervisor.stopping

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def closing() -> Iterator[list[Supervisor]]:
    made: list[Supervisor] = []
    yield made
    for supervisor in made:
        supervisor.close()


def harness(closing: list[Supervisor], *args: Any, **kwargs: Any) -> Harness:
    h = Harness(*args, **kwargs)
    closing.append(h.supervisor)
    return h


def test_lost_connections_are_retried_with_growing_backoff_until_a_run_ends_cleanly(
    closing: list[Supervisor],
) -> None:
    lost = ConnectError("replication connection lost: server closed the connection")
    h = harness(closing, [lost, lost, SinkError("could not write: [SQLSTATE 57P01]"), None])
    stats = h.supervisor.run()
    assert h.waits == [0.25, 0.5, 1.0]  # half (random = 0.5) of 0.5, 1, 2
    assert stats.records == 40  # every attempt's statistics add up
    assert all(d.closed for d in h.daemons)
    assert h.value("activity_cdc_reconnects_total") == 3
    assert h.value("activity_cdc_errors_total", kind="ConnectError") == 2
    assert h.value("activity_cdc_errors_total", kind="SinkError") == 1
    assert h.supervisor.reconnects == 3


def test_a_raw_driver_error_that_is_a_lost_connection_is_retried_too(
    closing: list[Supervisor],
) -> None:
    h = harness(closing, [psycopg.errors.AdminShutdown("terminating connection"), None])
    h.supervisor.run()
    assert h.waits == [0.25]
    assert h.value("activity_cdc_errors_total", kind="AdminShutdown") == 1


@pytest.mark.parametrize(
    "error",
    [
        SlotInvalidated("slot s is invalidated; recover: …"),
        SlotNotFound('replication slot "s" does not exist; run "cdc setup"'),
        PublicationNotFound('publication "p" does not exist; run "cdc setup"'),
        ConfigError("cdc.toml: invalid configuration"),
        PrerequisiteError("wal_level is 'replica'"),
        DecodeError("Insert", "tuple", 5, "truncated"),
        SinkError("could not write 5 records: permission denied [SQLSTATE 42501]"),
        StreamError("the server ended the replication stream: WAL removed (SQLSTATE 58P01)"),
        ConnectError('cannot connect: FATAL:  password authentication failed for user "cdc"'),
        raised_from(SlotNotFound("slot gone (SQLSTATE 08006)"), psycopg.errors.AdminShutdown()),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_a_person_must_fix_are_raised_at_once_without_a_retry(
    closing: list[Supervisor], error: CdcError
) -> None:
    h = harness(closing, [ConnectError("connection lost"), error, None])
    with pytest.raises(type(error)) as raised:
        h.supervisor.run()
    assert raised.value is error
    assert len(h.daemons) == 2 and h.daemons[1].closed
    assert h.waits == [0.25]  # only the lost connection before it was waited for


def test_a_busy_slot_makes_a_standby_that_looks_every_interval_and_takes_over_when_free(
    closing: list[Supervisor],
) -> None:
    busy = SlotInUse('replication slot "s" is active for PID 42 (SQLSTATE 55006): another …')
    h = harness(closing, [busy, None], probe=[42, 42, None], standby_retry_s=2)
    seen: list[tuple[float | None, float | None]] = []
    original = h._wait

    def wait(seconds: float) -> bool:
        seen.append((h.value("activity_cdc_standby"), h.value("activity_cdc_streaming")))
        return original(seconds)

    h.supervisor._wait = wait
    h.supervisor.run()
    assert h.waits == [2, 2, 2]  # steady, not a backoff
    assert len(h.daemons) == 2  # no daemon was started while the slot was busy
    assert seen == [(1.0, 0.0)] * 3
    assert h.value("activity_cdc_standby") == 0
    assert h.value("activity_cdc_reconnects_total") == 0  # waiting is not reconnecting
    assert h.metrics.readiness() == (False, "standby: the slot is in use by another process")


def test_a_standby_whose_probe_cannot_connect_lets_the_next_run_find_out(
    closing: list[Supervisor],
) -> None:
    h = harness(closing, [SlotInUse("busy"), None], standby_retry_s=2)
    h._probe = iter([])

    def failing_probe() -> int | None:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    h.supervisor._active_pid = failing_probe
    h.supervisor.run()
    assert h.waits == [2] and len(h.daemons) == 2


def test_a_stop_during_the_backoff_returns_at_once_without_another_run(
    closing: list[Supervisor],
) -> None:
    lost = ConnectError("connection lost")
    h = harness(closing, [lost, lost, None], stop_on_wait=1)
    h.supervisor.run()
    assert len(h.daemons) == 1 and h.waits == [0.25]


def test_a_stop_during_standby_returns_at_once(closing: list[Supervisor]) -> None:
    h = harness(closing, [SlotInUse("busy"), None], probe=[42, 42, 42], stop_on_wait=2)
    h.supervisor.run()
    assert len(h.daemons) == 1 and h.waits == [2, 2]


def test_a_stop_while_a_daemon_is_being_made_reaches_that_daemon(
    closing: list[Supervisor],
) -> None:
    h = harness(closing, [None])
    original = h._make

    def make(settings: Settings, metrics: Metrics | None) -> FakeDaemon:
        daemon = original(settings, metrics)
        h.supervisor.request_stop()  # a SIGTERM before the supervisor knows this daemon
        return daemon

    h.supervisor._factory = make
    h.supervisor.run()
    assert h.daemons[0].stop_requested


def test_a_lost_connection_while_stopping_ends_the_loop_instead_of_retrying(
    closing: list[Supervisor],
) -> None:
    h = harness(closing, [ConnectError("connection lost"), None])
    h._script = iter([ConnectError("connection lost")])
    original = h._make

    def make(settings: Settings, metrics: Metrics | None) -> FakeDaemon:
        daemon = original(settings, metrics)
        daemon.during_run = h.supervisor.request_stop
        return daemon

    h.supervisor._factory = make
    h.supervisor.run()
    assert len(h.daemons) == 1 and h.waits == []


def test_records_another_daemon_already_wrote_are_retried_a_few_times_then_raised(
    closing: list[Supervisor],
) -> None:
    duplicate = SinkError("could not write 200 records: duplicate key value [SQLSTATE 23505]")
    h = harness(closing, [duplicate, duplicate, duplicate, duplicate, None])
    with pytest.raises(SinkError) as raised:
        h.supervisor.run()
    assert raised.value is duplicate
    assert len(h.waits) == 3 and len(h.daemons) == 4
    assert h.value("activity_cdc_errors_total", kind="SinkError") == 3


def test_a_paused_daemon_whose_records_were_written_by_the_standby_becomes_the_standby(
    closing: list[Supervisor],
) -> None:
    duplicate = raised_from(SinkError("could not write"), psycopg.errors.UniqueViolation())
    busy = SlotInUse('replication slot "s" is active for PID 42')
    h = harness(closing, [duplicate, busy, duplicate, busy, duplicate, None], probe=[None] * 3)
    h.supervisor.run()  # never three duplicates in a row: the slot was busy in between
    assert len(h.daemons) == 6


def test_the_backoff_starts_over_after_a_run_that_lasted_the_stable_period(
    closing: list[Supervisor],
) -> None:
    lost = ConnectError("connection lost")
    h = harness(
        closing,
        [lost, lost, lost, (lost, 120.0), lost, None],
        reconnect_reset_after_s=60,
    )
    h.supervisor.run()
    assert h.waits == [0.25, 0.5, 1.0, 0.25, 0.5]


def test_reload_reaches_the_running_daemon_and_later_ones_but_keeps_the_source(
    closing: list[Supervisor],
) -> None:
    lost = ConnectError("connection lost")
    h = harness(closing, [lost, None])
    new = settings_from_mapping(
        {
            "source": {"dsn": "host=elsewhere dbname=app", "slot": "s"},
            "daemon": {"heartbeat_interval_s": 5},
            "tables": [{"name": "public.t", "category": "after"}],
        },
        env={},
    )
    ignored: list[str] = []
    original = h._make

    def make(settings: Settings, metrics: Metrics | None) -> FakeDaemon:
        daemon = original(settings, metrics)
        if len(h.daemons) == 1:
            daemon.during_run = lambda: ignored.extend(h.supervisor.reload(new))
        return daemon

    h.supervisor._factory = make
    h.supervisor.run()
    first, second = h.daemons
    assert [s.tables[0].category for s in first.reloaded] == ["after"]
    assert second.settings is not None and second.settings.tables[0].category == "after"
    assert second.settings.source.dsn == "host=db.invalid dbname=app"
    assert second.settings.daemon.heartbeat_interval_s == 0
    assert ignored == ["source", "daemon"]


def test_backoff_bounds_are_validated() -> None:
    with pytest.raises(ConfigError, match="reconnect_max_s"):
        settings(reconnect_initial_s=10, reconnect_max_s=1)


# -- heartbeat message -------------------------------------------------------------------------


def test_heartbeat_content_is_json_with_an_iso_utc_time_the_receiver_can_parse() -> None:
    sent = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    body = json.loads(heartbeat_content(sent))
    assert body == {"sent_at": "2026-01-02T01:04:05.678901+00:00"}
    assert datetime.fromisoformat(body["sent_at"]) == sent.astimezone(UTC)


# -- slot retention grades ---------------------------------------------------------------------


def sample(**overrides: Any) -> SlotSample:
    values: dict[str, Any] = {
        "slot": "s",
        "wal_status": "reserved",
        "safe_wal_size": 9 * GiB,
        "retained_bytes": 1 * GiB,
        "max_slot_wal_keep_size": 10 * GiB,
        "max_wal_size": 1 * GiB,
    }
    values.update(overrides)
    return SlotSample(**values)


def test_a_slot_well_within_its_limit_is_ok() -> None:
    assert judge(sample(), warn_fraction=0.8).level == OK


def test_a_slot_near_max_slot_wal_keep_size_warns_with_the_numbers_and_the_fix() -> None:
    retention = judge(
        sample(wal_status="extended", retained_bytes=int(8.5 * GiB), safe_wal_size=int(1.5 * GiB)),
        warn_fraction=0.8,
    )
    assert retention.level == WARNING
    assert "retains 8.5 GB" in retention.message and "85%" in retention.message
    assert (
        "1.5 GB left" in retention.message and "max_slot_wal_keep_size 10.0 GB" in retention.message
    )
    assert "cdc lag" in retention.message and "pg_reload_conf" in retention.message


def test_extended_wal_status_warns_even_without_a_limit() -> None:
    retention = judge(
        sample(wal_status="extended", safe_wal_size=None, max_slot_wal_keep_size=None),
        warn_fraction=0.8,
    )
    assert retention.level == WARNING
    assert "more than max_wal_size 1.0 GB" in retention.message and "no limit" in retention.message


def test_an_unreserved_slot_is_critical_and_says_it_is_invalidated_at_the_next_checkpoint() -> None:
    retention = judge(
        sample(wal_status="unreserved", retained_bytes=11 * GiB, safe_wal_size=-64 * MiB),
        warn_fraction=0.8,
    )
    assert retention.level == CRITICAL
    assert "next checkpoint" in retention.message and "act now" in retention.message


def test_a_lost_slot_points_at_the_recovery_steps() -> None:
    retention = judge(sample(wal_status="lost"), warn_fraction=0.8)
    assert retention.level == LOST and "An invalidated slot" in retention.message


def test_cdc_run_freezes_start_up_objects_and_collects_young_ones_rarely() -> None:
    """quiet_collector changes the interpreter it runs in: checked in a process of its own."""
    import subprocess
    import sys

    code = (
        "import gc; from cdc.service.run import COLLECT_EVERY, quiet_collector; "
        "quiet_collector(); "
        "print(gc.get_threshold()[0] == COLLECT_EVERY, gc.get_freeze_count() > 1000)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["True", "True"]


def test_every_attempt_expects_the_publication_the_first_attempt_found() -> None:
    """A publication dropped and created again while the supervisor reconnects: the next
    daemon compares the publication's OID with the one the first found (its guard raises
    PublicationNotFound on another), not with whatever it finds at its own start."""
    clock = FakeClock()
    seen: list[int | None] = []
    outcomes = iter(
        [ConnectError("replication connection lost: server closed the connection"), None]
    )

    def make(settings: Settings, metrics: Metrics | None) -> FakeDaemon:
        daemon = FakeDaemon(next(outcomes), clock, 0.0, settings)

        def during() -> None:
            seen.append(getattr(daemon, "publication_oid", None))
            daemon.publication_oid = 16384  # type: ignore[attr-defined]  # what its guard found

        daemon.during_run = during
        return daemon

    supervisor = Supervisor(
        settings(),
        daemon_factory=make,
        clock=clock,
        random=lambda: 0.5,
        wait=lambda _seconds: False,
        slot_probe=lambda: None,
    )
    try:
        supervisor.run()
    finally:
        supervisor.close()
    assert seen == [None, 16384]
