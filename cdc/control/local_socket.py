"""Whether a daemon beside its database reaches the source the cheaper way.

The walsender sends every pgoutput message with a ``send()`` of its own. Over TCP loopback
each of those runs the TCP stack for both ends in the walsender's process; over the server's
Unix socket it is a copy. Beside the database that is 8-20% of the walsender's CPU per change
(docs/operations.md, "Where the daemon runs"), paid by the database, for one word of the DSN.

``cdc check`` advises it only when it would work as configured: the source is reached over
TCP loopback, a socket of the same port exists on this host, the same role connects through
it (pg_hba.conf may say otherwise for local connections), and it is the same server (the
same postmaster start time and database: a container's published port and a host's own
cluster can share a port number).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
# Where Debian, Red Hat and a source build put the socket, for a role that may not read
# unix_socket_directories (a superuser-only setting).
DEFAULT_SOCKET_DIRECTORIES = ("/var/run/postgresql", "/run/postgresql", "/tmp")
PROBE_TIMEOUT_S = 3
_IDENTITY = (
    "SELECT pg_postmaster_start_time(), "
    "(SELECT oid FROM pg_database WHERE datname = current_database())"
)


def socket_directories(conn: psycopg.Connection[Any]) -> list[str]:
    """The server's socket directories when the role may read them, else the usual ones."""
    try:
        row = conn.execute("SELECT current_setting('unix_socket_directories', true)").fetchone()
    except psycopg.Error:
        row = None
    configured = str(row[0]) if row and row[0] else ""
    named = [part.strip().strip('"') for part in configured.split(",") if part.strip()]
    # '@name' is an abstract socket (Linux): no file to find, and libpq reaches it as host=@name.
    return [d for d in named if d.startswith(("/", "@"))] or list(DEFAULT_SOCKET_DIRECTORIES)


def local_socket_host(
    conn: psycopg.Connection[Any], dsn: str, directories: Sequence[str] | None = None
) -> str | None:
    """The socket directory to put in the DSN's ``host`` instead of a loopback address, or
    None when the source is not reached over loopback or the socket would not do as well.
    ``directories``: where to look (default: the server's, as :func:`socket_directories`)."""
    if conn.info.host not in LOOPBACK:
        return None
    port = conn.info.port
    identity = conn.execute(_IDENTITY).fetchone()
    params = conninfo_to_dict(dsn)
    params.pop("hostaddr", None)
    for directory in socket_directories(conn) if directories is None else directories:
        if not directory.startswith("@") and not Path(directory, f".s.PGSQL.{port}").exists():
            continue
        params.update(host=directory, port=str(port), connect_timeout=str(PROBE_TIMEOUT_S))
        params.setdefault("application_name", "activity-cdc control")
        try:
            with psycopg.connect(make_conninfo("", **params)) as probe:
                if probe.execute(_IDENTITY).fetchone() == identity:
                    return directory
        except psycopg.Error:
            continue  # refused to this role (pg_hba.conf), or not a server of ours
    return None
