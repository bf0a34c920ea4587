"""``pg_logical_emit_message``: the one server function activity-cdc writes WAL through (context,
application events, the heartbeat, cutover markers), and how its signature differs by version.

PostgreSQL 17 added a fourth parameter, ``flush boolean DEFAULT false``: the only signatures are
``(boolean, text, text, boolean)`` and ``(boolean, text, bytea, boolean)`` there, and
``(boolean, text, text)`` / ``(boolean, text, bytea)`` on 14-16. A call with three arguments
works on every version; anything that names the function by signature (GRANT, REVOKE,
``has_function_privilege``) must use the server's own. Statements look the signatures up by
name in ``pg_proc``; hints for a person spell the text variant of the server at hand.

``flush => true`` writes a non-transactional message to disk at once (and lets the walsender,
which sends only flushed WAL, send it at once). It changes nothing for a transactional message:
the commit record flushes it.
"""

from __future__ import annotations

# The server version that added `flush` (server_version_num).
FLUSH_SINCE = 170000


def has_flush(server_version: int) -> bool:
    """Whether ``pg_logical_emit_message`` takes ``flush`` on a server of this version."""
    return server_version >= FLUSH_SINCE


def text_signature(server_version: int) -> str:
    """The text variant's signature on that server, for GRANT hints."""
    arguments = (
        "boolean, text, text, boolean" if has_flush(server_version) else "boolean, text, text"
    )
    return f"pg_catalog.pg_logical_emit_message({arguments})"


def grant_hint(server_version: int, role: str) -> str:
    """The statement that lets ``role`` emit messages on that server."""
    return f"GRANT EXECUTE ON FUNCTION {text_signature(server_version)} TO {role}"
