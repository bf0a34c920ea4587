"""The acknowledged LSN, held back until the publication is known to have existed when it
was received.

Why: decoding reads the publication as of each change (the historic catalog). When it has been
dropped, PostgreSQL 15-17 end the stream with an error (:func:`cdc.pipeline.stream.server_error`
makes it :class:`PublicationNotFound`), but PostgreSQL 18's pgoutput logs a WARNING in the
server's log and skips the change: nothing reaches the client, and a daemon that acknowledged
past it would lose it silently. A publication dropped and created again skips the changes in
between just the same, so the check compares the publication's OID with the one at start-up.

The rule: a position may be acknowledged only if it was received before a successful check. A
drop that skipped a change committed before that change was decoded, so before the position
was received, so before the check, which then sees the publication missing (or with another
OID). Checks run on their own (non-replication) connection, at most one per ``interval_s``;
in between, only what was received before the last check is acknowledged, which delays the
acknowledgement by about ``interval_s`` and costs one query per interval instead of one per
flush.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

from cdc.connect import connect
from cdc.errors import ConnectError, PublicationNotFound, first_line
from cdc.lsn import format_lsn

log = logging.getLogger("cdc.daemon")

CHECK_INTERVAL_S = 1.0


class PublicationGuard:
    """``allowed(wanted_lsn, received_lsn)``: how far the acknowledgement may move now."""

    def __init__(
        self,
        dsn: str,
        publication: str,
        *,
        interval_s: float = CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dsn = dsn
        self.publication = publication
        self._interval_s = interval_s
        self._clock = clock
        self._conn: psycopg.Connection[Any] | None = None
        self.oid: int | None = None  # the publication's OID at start-up
        self.verified_lsn = 0  # everything received before the last successful check
        self._checked_at = float("-inf")

    def start(self, expected_oid: int | None = None) -> None:
        """Learn the publication's OID (before the stream starts). ``expected_oid``: the one an
        earlier run of this daemon found (the supervisor's next attempt after a lost
        connection), which the publication must still have."""
        oid = self._current_oid()
        if expected_oid is not None and oid != expected_oid:
            raise self._created_again(expected_oid, oid)
        self.oid = oid
        log.debug("publication %s has OID %d", self.publication, self.oid)

    def allowed(self, wanted_lsn: int, received_lsn: int, *, force: bool = False) -> int:
        """The highest position up to ``wanted_lsn`` that may be acknowledged: checks the
        publication when ``wanted_lsn`` passes what is verified and a check is due (or
        ``force``), counting as verified what was received before it. Raises
        :class:`PublicationNotFound` when the publication is gone or was created again."""
        if wanted_lsn <= self.verified_lsn:
            return wanted_lsn
        if force or self.due_in_s() == 0:
            self._check(received_lsn)
        return min(wanted_lsn, self.verified_lsn)

    def due_in_s(self) -> float:
        """Seconds until the next check may run."""
        return max(self._checked_at + self._interval_s - self._clock(), 0.0)

    def _check(self, received_lsn: int) -> None:
        assert self.oid is not None, "start() first"
        oid = self._current_oid()
        if oid != self.oid:
            raise self._created_again(self.oid, oid)
        self._checked_at = self._clock()
        self.verified_lsn = max(self.verified_lsn, received_lsn)

    def _created_again(self, oid: int, now: int) -> PublicationNotFound:
        return PublicationNotFound(
            f'publication "{self.publication}" was dropped and created again on the source '
            f"(OID {oid}, now {now}) while the daemon streamed: changes made in between were "
            "not published and are not recorded; acknowledged through "
            f'{format_lsn(self.verified_lsn)}. Run "cdc setup" and reconcile that window from '
            "the source tables"
        )

    def _current_oid(self) -> int:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self._dsn)
            row = self._conn.execute(
                "SELECT oid::bigint FROM pg_publication WHERE pubname = %s", (self.publication,)
            ).fetchone()
        except psycopg.OperationalError as exc:
            self.close()
            raise ConnectError(
                f"source connection lost while checking the publication: {first_line(exc)}"
            ) from None
        if row is None:
            raise PublicationNotFound(
                f'publication "{self.publication}" does not exist on the source; run "cdc setup"'
            )
        return int(row[0])

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
