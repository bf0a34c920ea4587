"""Supervisor: keeps the daemon running through lost connections, restarts and failovers.

:class:`Supervisor` runs a :class:`~cdc.service.daemon.Daemon` in a loop. Each attempt is a fresh
``Daemon(...).run()``, which reads the checkpoint from the sink and resumes the slot from it:
transactions at or below the checkpoint are skipped, so a reconnect loses nothing and writes
nothing twice. What happens when a run ends with an error:

* **The connection was lost** (:func:`is_connection_loss`: the server restarted, crashed,
  failed over, refused connections while starting up, or the network dropped): wait
  :class:`Backoff` (exponential with full jitter), count ``activity_cdc_reconnects_total`` and
  ``activity_cdc_errors_total{kind}``, and start again. The attempt counter starts over after a
  run that lasted ``reconnect_reset_after_s``.
* **The slot is active for another process** (:class:`~cdc.errors.SlotInUse`): another daemon
  streams from it. This process becomes a hot standby: every ``standby_retry_s`` it looks at
  ``pg_replication_slots`` (one regular connection, no daemon started) and takes the slot as
  soon as it is inactive, for as long as it takes. It never terminates the other walsender:
  when the other daemon dies, its walsender ends at once if the kernel closed the socket
  (process killed), or at ``wal_sender_timeout`` if it did not (host lost, process frozen).
* **The sink already holds the records** (:func:`is_duplicate_write`): another daemon wrote
  them while this one was paused or cut off; this one still had them in its socket buffer.
  Retried like a lost connection (the next run reads the newer checkpoint, or finds the slot
  busy and becomes a standby), at most ``MAX_DUPLICATE_RETRIES`` times in a row: a duplicate
  that survives re-reading the checkpoint is a bug and stops the daemon (exit 8).
* **Anything else** (slot invalidated or missing, publication missing, a configuration or
  prerequisite error, malformed protocol data, a sink error that is not a lost connection):
  re-raised at once. Each says what to do; retrying would only hide it.

:meth:`Supervisor.request_stop` is signal-safe and ends a wait at once; during a run it asks
the daemon to finish its batch and acknowledge it, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import time
from collections.abc import Callable
from typing import Any, Protocol

import psycopg

from cdc.config import DaemonSettings, Settings
from cdc.errors import (
    CdcError,
    ConfigError,
    DecodeError,
    PrerequisiteError,
    SlotError,
    SlotInUse,
    first_line,
)
from cdc.metrics import Metrics
from cdc.retry import Backoff, is_connection_loss, is_duplicate_write
from cdc.service.daemon import Daemon, RunStats

log = logging.getLogger("cdc.supervisor")  # log lines keep the name they had

# Never retried, whatever caused them (SlotInUse, a SlotError too, is caught before these).
_FINAL = (SlotError, ConfigError, PrerequisiteError, DecodeError)

# A sink refusing already-written records is retried this often in a row (re-reading the
# checkpoint resolves it when another daemon wrote them); then it is an error like any other.
MAX_DUPLICATE_RETRIES = 3


class DaemonLike(Protocol):
    """What the supervisor needs of a daemon (:class:`~cdc.service.daemon.Daemon`; fakes in
    tests)."""

    stats: RunStats
    publication_oid: int | None  # as its first run found it (cdc.pipeline.publication_guard)

    def run(self) -> RunStats: ...
    def request_stop(self) -> None: ...
    def reload(self, settings: Settings) -> list[str]: ...
    def close(self) -> None: ...


DaemonFactory = Callable[[Settings, Metrics | None], DaemonLike]


def _new_daemon(settings: Settings, metrics: Metrics | None) -> DaemonLike:
    return Daemon(settings, metrics=metrics)


class Supervisor:
    """Runs daemons until :meth:`request_stop`; see the module docstring. ``run()`` returns the
    statistics of all attempts together, or raises the first error that is not retried."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        daemon_factory: DaemonFactory = _new_daemon,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
        wait: Callable[[float], bool] | None = None,
        slot_probe: Callable[[], int | None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._factory = daemon_factory
        self._clock = clock
        daemon_settings: DaemonSettings = settings.daemon
        self.backoff = Backoff(
            daemon_settings.reconnect_initial_s, daemon_settings.reconnect_max_s, random=random
        )
        self._stop_r, self._stop_w = os.pipe()
        os.set_blocking(self._stop_r, False)
        os.set_blocking(self._stop_w, False)
        self._wait = wait or self._wait_for_stop
        self._probe = _SlotProbe(settings.source.dsn, settings.source.slot)
        self._active_pid = slot_probe or self._probe.active_pid
        # Plain attributes, no locks: request_stop() runs in signal handlers.
        self._stopping = False
        self._daemon: DaemonLike | None = None
        self.reconnects = 0
        self.standby_since: float | None = None
        self._duplicates = 0  # sink refusals of already-written records, in a row
        # The publication's OID the first attempt found; every later one expects it.
        self._publication_oid: int | None = None

    # -- control (signal handlers, other threads) -------------------------------------------

    def request_stop(self) -> None:
        """End a wait at once, or ask the running daemon to finish its batch, acknowledge it
        and return. Signal-safe; idempotent."""
        self._stopping = True
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._stop_w, b"x")
        daemon = self._daemon
        if daemon is not None:
            daemon.request_stop()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def reload(self, settings: Settings) -> list[str]:
        """New mapping, redaction and batch settings for the running daemon and every later
        one. Returns the sections whose changes need a restart (kept as they were)."""
        restart_only = ("source", "sink", "metrics", "daemon")
        ignored = [
            name for name in restart_only if getattr(settings, name) != getattr(self.settings, name)
        ]
        keep = {name: getattr(self.settings, name) for name in restart_only}
        self.settings = settings.model_copy(update=keep)
        daemon = self._daemon
        if daemon is not None:
            daemon.reload(self.settings)
        return ignored

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> RunStats:
        total = RunStats()
        started = self._clock()
        try:
            while not self._stopping:
                error = self._attempt(total)
                if error is None:
                    return total
                if self._stopping:
                    log.warning("stopping after: %s (nothing unwritten was acknowledged)", error)
                    return total
                if isinstance(error, SlotInUse):
                    if self._standby_wait(error):
                        return total
                    continue
                self._leave_standby()
                if self._reconnect_wait(error):
                    return total
            return total
        finally:
            total.elapsed_s = self._clock() - started
            self._leave_standby()
            if self.metrics is not None:
                self.metrics.set_standby(False)

    def _attempt(self, total: RunStats) -> CdcError | psycopg.OperationalError | None:
        """One daemon run. None: it returned (stopped). An error to retry after; anything
        else propagates."""
        daemon = self._factory(self.settings, self.metrics)
        self._daemon = daemon
        if self._publication_oid is not None:
            daemon.publication_oid = self._publication_oid
        if self._stopping:  # a stop that came while the daemon was being made
            daemon.request_stop()
        started = self._clock()
        try:
            daemon.run()
            return None
        except SlotInUse as exc:
            self._duplicates = 0
            return exc
        except _FINAL:
            raise
        except (CdcError, psycopg.OperationalError) as exc:
            stable = self._clock() - started >= self.settings.daemon.reconnect_reset_after_s
            if stable:
                self.backoff.reset()  # it ran stably: this is a new outage
                self._duplicates = 0
            if is_connection_loss(exc):
                return exc
            if is_duplicate_write(exc) and self._duplicates < MAX_DUPLICATE_RETRIES:
                self._duplicates += 1
                log.warning(
                    "%s: the sink already holds these records: another daemon took over the "
                    "slot and wrote them while this one was paused or cut off; re-reading the "
                    "checkpoint (%d of %d)",
                    first_line(exc),
                    self._duplicates,
                    MAX_DUPLICATE_RETRIES,
                )
                return exc
            raise
        finally:
            self._daemon = None
            self._publication_oid = getattr(daemon, "publication_oid", None) or (
                self._publication_oid
            )
            _add(total, daemon.stats)
            daemon.close()

    def _standby_wait(self, error: SlotInUse) -> bool:
        """Wait until the slot looks free (or the probe fails: the next run finds out why);
        True when a stop was requested."""
        interval = self.settings.daemon.standby_retry_s
        slot = self.settings.source.slot
        if self.standby_since is None:
            self.standby_since = self._clock()
            log.info(
                "standby: slot %s is in use by another process (%s); checking every %gs, "
                "taking over when it is free",
                slot,
                first_line(error).split(":")[0],
                interval,
            )
        if self.metrics is not None:
            self.metrics.set_streaming(False, "standby: the slot is in use by another process")
            self.metrics.set_standby(True)
        self.backoff.reset()  # the server answers: a later connection loss starts small
        while True:
            if self._wait(interval):
                return True
            try:
                pid = self._active_pid()
            except psycopg.Error as exc:
                log.debug("standby: cannot look at slot %s: %s", slot, first_line(exc))
                self._probe.close()
                return False
            if pid is None:
                log.info(
                    "standby: slot %s is free after %.1fs; taking over",
                    slot,
                    self._clock() - self.standby_since,
                )
                self._leave_standby()
                return False
            log.debug("standby: slot %s still active for walsender pid %d", slot, pid)

    def _leave_standby(self) -> None:
        self.standby_since = None
        self._probe.close()

    def _reconnect_wait(self, error: CdcError | psycopg.OperationalError) -> bool:
        """Count the lost connection and wait the backoff; True when a stop was requested."""
        kind = type(error).__name__
        self.reconnects += 1
        delay = self.backoff.next_delay()
        log.warning(
            "%s: %s; reconnecting in %.1fs (attempt %d)",
            kind,
            first_line(error),
            delay,
            self.backoff.attempt,
        )
        if self.metrics is not None:
            self.metrics.error(kind)
            self.metrics.reconnect()
            self.metrics.set_streaming(False, "reconnecting")
            self.metrics.set_standby(False)
        return self._wait(delay)

    def _wait_for_stop(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True at once when a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(InterruptedError):
                select.select([self._stop_r], [], [], remaining)
        return True

    def close(self) -> None:
        self._probe.close()
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class _SlotProbe:
    """Whether the slot is active, on one regular connection kept while in standby."""

    def __init__(self, dsn: str, slot: str) -> None:
        self._dsn = dsn
        self._slot = slot
        self._conn: psycopg.Connection[Any] | None = None

    def active_pid(self) -> int | None:
        """The walsender pid streaming from the slot; None: inactive or missing. Raises
        psycopg.Error."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=10,
                application_name="activity-cdc standby",
            )
        row = self._conn.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (self._slot,)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


def _add(total: RunStats, run: RunStats) -> None:
    if not total.start_lsn:
        total.start_lsn = run.start_lsn
    total.changes += run.changes
    total.records += run.records
    total.transactions += run.transactions
    total.streamed_transactions += run.streamed_transactions
    total.skipped_transactions += run.skipped_transactions
    total.flushes += run.flushes
    total.flushed_lsn = max(total.flushed_lsn, run.flushed_lsn)
    total.drain_target_lsn = run.drain_target_lsn
