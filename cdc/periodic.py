"""The periodic background workers of the daemon: the heartbeat (cdc.control.heartbeat), the
slot watch (cdc.control.slot_watch) and the JetStream watch (cdc.control.jetstream_watch).

A subclass says what one round does (:meth:`Periodic.tick`); :class:`Periodic` runs it every
``interval_s`` in a daemon thread (also once at the start with ``tick_at_start``) until
:meth:`~Periodic.stop`. :class:`PeriodicWorker` adds its own connection to a database: opened
when a round asks for it (:meth:`~PeriodicWorker.connection`: autocommit, a 10 s connect and
statement timeout, so a hung server cannot hold a round for ever), dropped after a failure
(:meth:`~PeriodicWorker.close`: the next round connects again) and closed at the stop. A worker
never stops the daemon: a round that fails is the subclass's to log, and the next one tries
again.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Self

import psycopg


class Periodic:
    """Runs :meth:`tick` every ``interval_s`` in a background thread (:meth:`start` /
    :meth:`stop`, or ``with``)."""

    tick_at_start = False  # a round as soon as the thread starts, before the first interval

    def __init__(self, interval_s: float, *, name: str) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="activity-cdc-" + name.replace(" ", "-"), daemon=True
        )

    def tick(self) -> None:
        """One round; runs in the worker's thread."""
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.close()

    def close(self) -> None:
        """What the worker holds, released at the stop (nothing here)."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        if self.tick_at_start:
            self.tick()
        while not self._stop.wait(self.interval_s):
            self.tick()


class PeriodicWorker(Periodic):
    """A :class:`Periodic` with its own connection to ``dsn``."""

    def __init__(self, dsn: str, interval_s: float, *, name: str) -> None:
        super().__init__(interval_s, name=name)
        self._dsn = dsn
        self._name = name  # the session is "activity-cdc <name>"
        self._conn: psycopg.Connection[Any] | None = None

    def connection(self) -> psycopg.Connection[Any]:
        """The worker's connection, opened if there is none. Raises psycopg.Error."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=10,
                application_name=f"activity-cdc {self._name}",
                options="-c statement_timeout=10000",
            )
        return self._conn

    def close(self) -> None:
        """Drop the connection (after a failure, or at the end); the next round reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
