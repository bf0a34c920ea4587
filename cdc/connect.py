"""The one way the control plane, the cutover commands and the store reader connect, and the
one way a server's error becomes part of a message.

The daemon's own long-lived connections (the replication stream, the sink, the heartbeat, the
slot watch) set their own options where they are opened; everything else connects here.
"""

from __future__ import annotations

from typing import Any

import psycopg

from cdc.dsn import connect_failure, describe_target, require_parsable
from cdc.errors import ConnectError

CONNECT_TIMEOUT_S = 10


def connect(dsn: str, *, role: str = "source", autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection to the ``role`` ("source" or "sink") database; any failure is a
    :class:`ConnectError` naming the database and the config key, with no secret in it."""
    require_parsable(dsn, role)
    try:
        return psycopg.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="activity-cdc control",
        )
    except psycopg.Error as exc:
        raise ConnectError(
            f"cannot connect to the {role} database {describe_target(dsn)}: "
            f"{connect_failure(exc, dsn)}; "
            f"check [{role}] dsn or CDC_{role.upper()}_DSN"
        ) from None


def server_message(exc: psycopg.Error) -> str:
    """What the server said (its primary message), else the driver's text."""
    return (exc.diag.message_primary or str(exc)).strip()
