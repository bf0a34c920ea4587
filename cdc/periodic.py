"""A periodic background worker with its own connection to a database: what the heartbeat
(cdc.control.heartbeat) and the slot watch (cdc.control.slot_watch) share.

A subclass says what one round does (:meth:`PeriodicWorker.tick`); this class runs it every
``interval_s`` in a daemon thread (also once at the start with ``tick_at_start``), opens the
connection when a round asks for it (:meth:`~PeriodicWorker.connection`: autocommit, a
10 s connect and statement timeout, so a hung server cannot hold a round for ever), drops it
after a failure (:meth:`~PeriodicWorker.close`: the next round connects again) and closes it
on :meth:`~PeriodicWorker.stop`. A worker never stops the daemon: a round that fails is the
subclass's to log, and the next one tries again.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Self

import psycopg


class PeriodicWorker:
    """Runs :meth:`tick` every ``interval_s`` in a background thread (:meth:`start` /
    :meth:`stop`, or ``with``)."""

    tick_at_start = False  # a round as soon as the thread starts, before the first interval

    def __init__(self, dsn: str, interval_s: float, *, name: str) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._dsn = dsn
        self.interval_s = interval_s
        self._name = name  # the session is "activity-cdc <name>"
        self._conn: psycopg.Connection[Any] | None = None
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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

    def _run(self) -> None:
        if self.tick_at_start:
            self.tick()
        while not self._stop.wait(self.interval_s):
            self.tick()
