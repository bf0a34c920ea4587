"""For the application side: record an activity, or set the transaction's context, from Python.

Both are one cheap WAL record in the caller's transaction (a logical message through the SQL
functions `cdc setup` creates), no insert on the application's path::

    from cdc.app import log_activity, set_context

    with conn.transaction():
        set_context(conn, actor_id=user.id, request_id=request_id)
        conn.execute("UPDATE investors SET kyc_status = 'approved' WHERE id = %s", (42,))
        log_activity(conn, "kyc.reviewed", entity_type="investor", entity_id=42)

``log_activity(..., transactional=False)`` is recorded even if the transaction rolls back (a
failed approval attempt). The connection's role needs EXECUTE on the functions: list it in
``[context] allowed_roles`` and run `cdc setup`.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import SEVERITY_LEVELS


def set_context(conn: psycopg.Connection[Any], *, schema: str = "activity", **context: Any) -> None:
    """The context (actor, request id, ...) of every change of the current transaction."""
    conn.execute(
        sql.SQL("SELECT {}.set_context(%s::jsonb)").format(sql.Identifier(schema)),
        (json.dumps(context, default=str),),
    )


def log_activity(
    conn: psycopg.Connection[Any],
    action: str,
    *,
    entity_type: str | None = None,
    entity_id: object = None,
    details: dict[str, Any] | None = None,
    category: str = "application",
    severity: str = "info",
    actor_id: object = None,
    summary: str | None = None,
    transactional: bool = True,
    schema: str = "activity",
) -> None:
    """An application activity that is not a row change (a login, an export, ...)."""
    if severity not in SEVERITY_LEVELS:
        raise ValueError(f"severity must be one of {', '.join(SEVERITY_LEVELS)}, not {severity!r}")
    function = "log" if transactional else "log_now"
    conn.execute(
        sql.SQL("SELECT {}.{}(%s, %s, %s, %s::jsonb, %s, %s, %s, %s)").format(
            sql.Identifier(schema), sql.Identifier(function)
        ),
        (
            action,
            entity_type,
            None if entity_id is None else str(entity_id),
            json.dumps(details or {}, default=str),
            category,
            severity,
            None if actor_id is None else str(actor_id),
            summary,
        ),
    )
