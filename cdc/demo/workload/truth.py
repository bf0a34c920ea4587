"""Ground truth: the row changes a workload committed, per (table, operation), and what became
of each transaction. A statement's changes are its ``cursor.rowcount``; they count only when
their transaction's COMMIT returned. When the connection breaks during COMMIT the outcome is
unknown to the client: the transaction's id, taken just before COMMIT, is looked up with
``txid_status()`` on a new connection, and counted if and only if the server committed it."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg

log = logging.getLogger("cdc.demo_workload")  # log lines keep the name they had

Key = tuple[str, str]  # (table, operation)

CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class InDoubt:
    """A transaction whose COMMIT broke off: its changes count only if ``txid`` committed."""

    txid: int
    counts: Counter[Key]


@dataclass
class GroundTruth:
    """What a workload committed: row changes per (table, operation), and transaction outcomes."""

    counts: Counter[Key] = field(default_factory=Counter)
    committed: int = 0  # transactions whose COMMIT succeeded (including resolved ones)
    rolled_back: int = 0  # transactions that ended in ROLLBACK on purpose
    failed: int = 0  # transactions ended by an error (nothing counted)
    resolved: int = 0  # commits that broke off and were resolved with txid_status()
    in_doubt: list[InDoubt] = field(default_factory=list)  # not resolved yet: not counted
    errors: list[str] = field(default_factory=list)  # clients that gave up, and why

    def total(self) -> int:
        """All committed row changes."""
        return sum(self.counts.values())

    def count(self, table: str, operation: str) -> int:
        return self.counts[(table, operation)]

    @property
    def exact(self) -> bool:
        """True when no commit outcome is unknown: ``counts`` is exactly what was committed."""
        return not self.in_doubt

    def merge(self, other: GroundTruth) -> GroundTruth:
        """Add ``other`` into this one (in place) and return self."""
        self.counts.update(other.counts)
        self.committed += other.committed
        self.rolled_back += other.rolled_back
        self.failed += other.failed
        self.resolved += other.resolved
        self.in_doubt.extend(other.in_doubt)
        self.errors.extend(other.errors)
        return self

    def settle(self, txid: int, counts: Counter[Key], status: str | None) -> None:
        """Record a broken-off commit given its ``txid_status()`` (None: still unknown)."""
        if status == "committed":
            self.counts.update(counts)
            self.committed += 1
            self.resolved += 1
        elif status == "aborted":
            self.failed += 1
            self.resolved += 1
        else:
            self.in_doubt.append(InDoubt(txid, counts))

    def resolve_in_doubt(self, dsn: str, *, timeout_s: float = 30.0) -> bool:
        """Look up the transactions still in doubt (e.g. once a killed server is back).

        Returns True when none is left in doubt.
        """
        pending, self.in_doubt = self.in_doubt, []
        for item in pending:
            self.settle(item.txid, item.counts, txid_status(dsn, item.txid, give_up_s=timeout_s))
        return self.exact


def txid_status(
    dsn: str, txid: int, *, give_up_s: float, stop: threading.Event | None = None
) -> str | None:
    """``'committed'`` or ``'aborted'``, asked on a new connection, retried while the server is
    unreachable or the transaction still in progress; None after ``give_up_s`` or on ``stop``."""
    deadline = time.monotonic() + give_up_s
    delay = 0.05
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                row = conn.execute("SELECT txid_status(%s)", (txid,)).fetchone()
            status = None if row is None else row[0]
            if status in ("committed", "aborted"):
                log.debug("transaction %d whose commit broke off was %s", txid, status)
                return str(status)
            if status is None:
                log.error("transaction %d is too old for txid_status(); outcome unknown", txid)
                return None
        except psycopg.Error as exc:
            log.debug("cannot ask for the outcome of transaction %d yet: %s", txid, exc)
        if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            log.warning("outcome of transaction %d still unknown; left in doubt", txid)
            return None
        if stop is not None:
            stop.wait(delay)
        else:
            time.sleep(delay)
        delay = min(delay * 2, 1.0)
