"""Heartbeat: a logical message every few seconds, so a quiet database still moves the slot.

With ``[daemon] heartbeat_interval_s`` set, a thread with its own (regular) connection to the
source runs::

    SELECT pg_logical_emit_message(false, 'cdc.heartbeat',
                                   '{"sent_at": "2025-06-01T12:00:00.123456+00:00"}')

every interval. The message is non-transactional: it is written to WAL at once and reaches
the daemon through the slot like any change, outside a transaction. That does two things
when the audited tables are quiet:

* the daemon acknowledges past it, so the slot's ``restart_lsn`` / ``confirmed_flush_lsn``
  advance and the server can recycle WAL (other databases' traffic also moves it, through
  keepalives; the heartbeat makes it independent of them);
* the daemon turns each received heartbeat into ``activity_cdc_heartbeat_latency_seconds``
  (received minus ``sent_at``): the end-to-end latency of the whole path, measured all the
  time, not only when someone writes.

On PostgreSQL 17 and later the message is emitted with ``flush => true``: the walsender sends
only WAL that is flushed, so an unflushed heartbeat on a quiet server would wait for the WAL
writer (and a crash could lose it) before it moves the slot.

``pg_logical_emit_message`` is executable by PUBLIC by default, but a superuser's ``cdc setup``
revokes that (no role may forge a transaction context), so the daemon's role needs EXECUTE on
its text variant (``(boolean, text, text)`` on 15 and 16, ``(boolean, text, text, boolean)``
from 17 on: cdc.logical_messages): ``cdc setup --print-role-sql`` grants it while heartbeats
are on, and ``cdc check`` fails (exit 5) when the role lacks it.

Failures never stop the daemon: the thread logs the first failure of a series (and the
recovery), drops the connection and tries again at the next interval.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Self

import psycopg

from cdc.dsn import connect_failure, describe_target
from cdc.logical_messages import grant_hint, has_flush
from cdc.metrics import Metrics
from cdc.periodic import PeriodicWorker

log = logging.getLogger("cdc.heartbeat")  # log lines keep the name they had

HEARTBEAT_PREFIX = "cdc.heartbeat"
_EMIT = "SELECT pg_catalog.pg_logical_emit_message(false, %s, %s)::text"
_EMIT_FLUSHED = "SELECT pg_catalog.pg_logical_emit_message(false, %s, %s, true)::text"


def heartbeat_content(sent_at: datetime) -> str:
    """The message body: ``{"sent_at": "<ISO 8601 UTC time, microseconds>"}``."""
    return json.dumps({"sent_at": sent_at.astimezone(UTC).isoformat(timespec="microseconds")})


class HeartbeatEmitter(PeriodicWorker):
    """Emits a heartbeat every ``interval_s`` from a background thread, while
    ``should_emit()`` says so (e.g. only while this process streams: a standby stays quiet).
    Use :meth:`start` and :meth:`stop`, or ``with``."""

    def __init__(
        self,
        dsn: str,
        interval_s: float,
        *,
        metrics: Metrics | None = None,
        should_emit: Callable[[], bool] = lambda: True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(dsn, interval_s, name="heartbeat")
        self._metrics = metrics
        self._should_emit = should_emit
        self._now = now
        self._failing = False
        self._server_version = 0  # of the last connection; picks the hint's signature
        self.sent = 0

    def start(self) -> Self:
        super().start()
        log.info("heartbeat every %gs to %s", self.interval_s, describe_target(self._dsn))
        return self

    def emit_once(self) -> str:
        """Emit one heartbeat now; returns its LSN. Raises psycopg.Error."""
        conn = self.connection()
        self._server_version = conn.info.server_version
        emit = _EMIT_FLUSHED if has_flush(self._server_version) else _EMIT
        row = conn.execute(emit, (HEARTBEAT_PREFIX, heartbeat_content(self._now()))).fetchone()
        self.sent += 1
        if self._metrics is not None:
            self._metrics.heartbeat_sent()
        return str(row[0]) if row else ""

    def tick(self) -> None:
        if not self._should_emit():
            return
        try:
            lsn = self.emit_once()
        except psycopg.Error as exc:
            self.close()
            if not self._failing:
                self._failing = True
                reason = connect_failure(exc, self._dsn)
                log.warning("heartbeat failed (trying again every %gs): %s%s",
                            self.interval_s, reason,
                            _hint(exc, self._server_version))  # fmt: skip
            return
        if self._failing:
            self._failing = False
            log.info("heartbeat works again (at %s)", lsn)
        else:
            log.debug("heartbeat at %s", lsn)


def _hint(exc: psycopg.Error, server_version: int) -> str:
    if exc.sqlstate == "42501":
        return (
            "; grant it: "
            + grant_hint(server_version, "<the daemon's role>")
            + " (cdc setup --print-role-sql prints it; cdc check tests it)"
        )
    return ""
