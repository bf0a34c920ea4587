"""The one error hierarchy of activity-cdc.

Every failure that a user can act on is a :class:`CdcError`. Each subclass carries the
process exit code that the CLI uses, and its message says what is wrong *and what to run
next*. Driver errors (``psycopg.Error``) are wrapped where the I/O happens, with
``raise ... from exc``, so nothing above the stream and the sink needs to know psycopg.

Exit codes: :data:`EXIT_CODES` below, the one table (``cdc --help`` prints it, README.md
documents it); every class's ``exit_code`` is one of its keys.
"""

from __future__ import annotations

from typing import Final

EXIT_CODES: Final[dict[int, str]] = {
    0: "success",
    1: "unexpected internal error (a bug: please report it)",
    2: "usage error (bad command-line options)",
    3: "lag over a threshold (cdc lag --max-bytes/--max-seconds)",
    4: "configuration error (bad or missing config file or values)",
    5: "cannot connect (or the connection was lost), or the server is not set up for logical "
    "replication",
    6: "replication slot or publication missing, invalid or in use",
    7: "malformed replication protocol data",
    8: "the sink could not write the activity records",
    9: "cdc verify found differences, or verify-chain a broken hash chain",
}


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (its class name when it has none): what a one-line
    message or log line quotes of it."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class CdcError(Exception):
    """Base of every error activity-cdc raises on purpose."""

    exit_code = 1


class ConfigError(CdcError):
    """The configuration file or an override is missing, unreadable or invalid."""

    exit_code = 4


class ConnectError(CdcError):
    """A database connection could not be opened or was lost."""

    exit_code = 5


class PrerequisiteError(CdcError):
    """The server is reachable but not set up for logical replication (wal_level, privileges)."""

    exit_code = 5


class SlotError(CdcError):
    """The replication slot or the publication is missing, invalid or busy."""

    exit_code = 6


class SlotNotFound(SlotError):
    """The configured replication slot does not exist."""


class SlotInUse(SlotError):
    """Another process is streaming from the replication slot."""


class SlotInvalidated(SlotError):
    """The server invalidated the slot (WAL it needed was removed): changes were lost upstream."""


class PublicationNotFound(SlotError):
    """The configured publication does not exist."""


class StreamError(CdcError):
    """The server ended the replication stream with an error."""

    exit_code = 5


class DecodeError(CdcError):
    """Bytes of the replication stream do not form a valid protocol message."""

    exit_code = 7

    def __init__(self, message_type: str, field: str, offset: int, detail: str) -> None:
        self.message_type = message_type
        self.field = field
        self.offset = offset
        self.detail = detail
        super().__init__(
            f"malformed pgoutput {message_type} message: field {field!r} at offset {offset}: "
            f"{detail}"
        )


class SinkError(CdcError):
    """The activity records could not be written; nothing was acknowledged."""

    exit_code = 8


class BrokerUnavailable(ConnectError):
    """The NATS JetStream cluster cannot be reached, or did not store a message in time."""


class BrokerError(SinkError):
    """JetStream refused a request: the stream or bucket is missing or not as configured."""


class LagExceeded(CdcError):
    """The slot's lag is over the threshold the user gave."""

    exit_code = 3


class VerifyFailed(CdcError):
    """``cdc verify`` found rows missing on either side, or values that differ."""

    exit_code = 9


class ChainBroken(VerifyFailed):
    """``cdc verify-chain``: a record was changed, deleted or inserted out of band."""


# How a supervisor should treat each exit code of ``cdc run``. The daemon already retries what
# time can fix (lost connections, a busy slot, a sink that is down) inside the process, so an
# exit is final for this attempt; these are the codes another attempt cannot change without a
# person (deploy/activity-cdc.service: RestartPreventExitStatus, tests/unit/test_deploy.py):
#   2 usage, 4 configuration: the same command line and file fail the same way;
#   6 the slot or publication is missing or invalidated: re-creating it silently would hide
#     the changes lost in between (docs/operations.md, "An invalidated slot");
#   7 malformed replication data: the same WAL would be decoded again, and fail again.
# 1 (a bug that may be transient), 5 (a server or role not ready: fixed by an administrator
# without touching the daemon) and 8 (the sink refused or failed: disk, permissions) are
# restarted with a delay.
EXIT_CODES_NOT_RESTARTED: tuple[int, ...] = (2, 4, 6, 7)
