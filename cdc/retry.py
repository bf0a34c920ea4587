"""When to try again: whether an error means a lost connection (or a server not available
yet), and how long to wait before the next attempt. The supervisor, the sink writer's callers
and ``cdc ingest`` decide with these."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import psycopg

from cdc.errors import ConnectError, SinkError

# SQLSTATEs of a connection that went away or a server that is not available yet: class 08
# (connection exception) plus these.
_TRANSIENT_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown: terminating connection due to administrator command
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: the database system is starting up / shutting down
        "53300",  # too_many_connections
        "25006",  # read_only_sql_transaction: the sink DSN reaches a demoted primary (failover)
    }
)

# FATAL messages at connection time that a later attempt can get past. Other FATALs (wrong
# password, no pg_hba.conf entry, unknown role or database) need a person.
_TRANSIENT_FATAL = re.compile(
    r"the database system is (starting up|shutting down|in recovery mode|not yet accepting"
    r"|not accepting)|too many (clients|connections)|remaining connection slots are reserved"
    r"|terminating connection due to administrator command",
    re.IGNORECASE,
)
_SQLSTATE_IN_TEXT = re.compile(r"SQLSTATE ([0-9A-Z]{5})")


def is_connection_loss(exc: BaseException) -> bool:
    """Whether ``exc`` means "the connection is gone or the server is not available right now",
    so that connecting again later can succeed. Looks at the psycopg error the exception was
    raised from (our errors keep it as ``__context__``), else at the SQLSTATE in the message."""
    driver = _driver_error(exc)
    if driver is not None:
        return _driver_error_is_transient(driver)
    text = str(exc)
    match = _SQLSTATE_IN_TEXT.search(text)
    if match:
        return _sqlstate_is_transient(match.group(1))
    if "FATAL:" in text:
        return bool(_TRANSIENT_FATAL.search(text))
    # No server error at all: the stream ended, the socket closed, a connection timed out.
    return isinstance(exc, ConnectError | psycopg.OperationalError)


def _driver_error(exc: BaseException) -> psycopg.Error | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, psycopg.Error):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _sqlstate_is_transient(sqlstate: str) -> bool:
    return sqlstate.startswith("08") or sqlstate in _TRANSIENT_SQLSTATES


def _driver_error_is_transient(error: psycopg.Error) -> bool:
    if error.sqlstate:
        return _sqlstate_is_transient(error.sqlstate)
    if not isinstance(error, psycopg.OperationalError):
        return False
    # libpq reports connection-time failures without a SQLSTATE; the server's FATAL says why.
    text = str(error)
    return "FATAL:" not in text or bool(_TRANSIENT_FATAL.search(text))


def is_duplicate_write(exc: BaseException) -> bool:
    """Whether the sink refused records because ``(commit_lsn, seq)`` is already there
    (SQLSTATE 23505). Another daemon wrote them: this one received them before it lost the
    slot (it was paused, or cut off without noticing, while a standby took over)."""
    if not isinstance(exc, SinkError):
        return False
    driver = _driver_error(exc)
    if driver is not None:
        return driver.sqlstate == "23505"
    match = _SQLSTATE_IN_TEXT.search(str(exc))
    return match is not None and match.group(1) == "23505"


class Backoff:
    """Exponential backoff with full jitter: the n-th delay (from 0) is uniform in
    ``[0, min(max_s, initial_s * 2**n)]``. ``random`` returns a float in [0, 1)."""

    def __init__(
        self, initial_s: float, max_s: float, *, random: Callable[[], float] = random.random
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.attempt = 0
        self._random = random

    def ceiling_s(self) -> float:
        """The upper bound of the next delay."""
        # 2**attempt overflows a float only after ~1000 attempts; the cap is reached long before.
        return min(self.max_s, self.initial_s * 2.0 ** min(self.attempt, 64))

    def next_delay(self) -> float:
        delay = self._random() * self.ceiling_s()
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
