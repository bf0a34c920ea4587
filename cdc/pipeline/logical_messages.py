"""Logical decoding messages (``pg_logical_emit_message``) that the mapping reads: a
transaction's context messages, an application's own events (``activity.log``), the cutover
markers that move a table between its legacy triggers and CDC, and the heartbeat.

Pure: each function takes the message (and what the mapper knows of its transaction) and
returns what it says; :class:`cdc.pipeline.activity.ActivityMapper` keeps the state.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import NamedTuple

from cdc.config import ContextSettings, split_qualified_name
from cdc.lsn import format_lsn
from cdc.pipeline.activity_record import (
    SEVERITIES,
    SOURCE_APPLICATION,
    SOURCE_MIGRATION,
    ActivityRecord,
    iso_text,
)
from cdc.pipeline.changes import TransactionInfo, TransactionMessage
from cdc.pipeline.values import jsonb_text

log = logging.getLogger("cdc.activity")  # log lines keep the name they had


class TransactionFields(NamedTuple):
    """What the mapper knows of a message's transaction: its commit's time and LSN as text,
    its context and its actor."""

    occurred_at: str
    commit_lsn: str
    context: dict[str, object] | None
    actor: str | None


class CutoverMarker(NamedTuple):
    """A table switches between legacy triggers (``mode`` 'shadow') and CDC ('cdc')."""

    schema: str
    table: str
    mode: str
    marker: dict[str, object]


def context_of(
    txn: TransactionInfo, settings: ContextSettings
) -> tuple[dict[str, object] | None, str | None]:
    """The transaction's context (its context messages merged in order) and its actor."""
    prefix = settings.prefix
    context: dict[str, object] | None = None
    for message in txn.messages:
        if message.prefix != prefix:
            continue
        context = {} if context is None else context
        try:
            body = json.loads(message.content.decode("utf-8"))
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
            context.update(body)
        except (UnicodeDecodeError, ValueError) as exc:
            # Kept visible rather than dropped: bad input never loses data silently.
            log.warning("invalid %s message in transaction %d: %s", prefix, txn.xid, exc)
            context["context_error"] = f"invalid context message: {exc}"
    if context is None:
        return None, None
    for key in settings.actor_keys:
        value = context.get(key)
        if value is not None and value != "":
            return context, str(value)
    return context, None


def heartbeat_latency_s(change: TransactionMessage) -> float | None:
    """Seconds from a heartbeat's ``sent_at`` to now (end to end); None if it is not one."""
    try:
        sent_at = datetime.fromisoformat(json.loads(change.content)["sent_at"])
        return (datetime.now(UTC) - sent_at).total_seconds()
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("invalid heartbeat message: %s", exc)
        return None


def application_event(
    change: TransactionMessage, fields: TransactionFields | None
) -> ActivityRecord:
    """activity.log(...): an application activity that is not a row change; ``fields`` None:
    not in a transaction."""
    txn = change.transaction
    try:
        body = json.loads(change.content.decode("utf-8"))
        if not isinstance(body, dict) or not body.get("action"):
            raise ValueError("needs a JSON object with an `action`")
    except (UnicodeDecodeError, ValueError) as exc:
        body = {
            "action": "activity.invalid_event",
            "severity": "warning",
            "category": "system",
            "details": {"error": str(exc), "raw": change.content.decode("utf-8", "replace")},
        }
    severity = body.get("severity") if body.get("severity") in SEVERITIES else "info"
    raw_details = body.get("details")
    details: dict[str, object] = raw_details if isinstance(raw_details, dict) else {}
    if txn is not None and fields is not None:
        occurred_at, commit_lsn = fields.occurred_at, fields.commit_lsn
        context = dict(fields.context or {})
        actor = body.get("actor_id") or fields.actor
        xid: int | None = txn.xid
    else:  # non-transactional (activity.log_now): logged even if the caller rolls back
        occurred_at = str(body.get("emitted_at") or iso_text(datetime.now(UTC)))
        commit_lsn = format_lsn(change.lsn)
        context = {}
        actor = body.get("actor_id")
        xid = None
    context.update(details)
    entity_type = body.get("entity_type")
    entity_id = body.get("entity_id")
    summary = body.get("summary") or " ".join(
        str(part) for part in (body["action"], entity_type, entity_id) if part is not None
    ) + ("" if actor is None else f" by {actor}")
    return ActivityRecord(
        occurred_at,
        SOURCE_APPLICATION,
        "message",
        str(body["action"]),
        str(body.get("category") or "application"),
        str(severity),
        None,
        None,
        None if entity_type is None else str(entity_type),
        None if entity_id is None else str(entity_id),
        None if actor is None else str(actor),
        jsonb_text(context) if context else None,
        None,
        None,
        None,
        str(summary),
        xid,
        commit_lsn,
        change.seq,
    )


def cutover_marker(change: TransactionMessage, txn: TransactionInfo) -> CutoverMarker | None:
    """The table and the mode a cutover marker names; None (logged) if it is not valid."""
    try:
        marker = json.loads(change.content.decode("utf-8"))
        schema, table = split_qualified_name(str(marker["table"]))
        target = str(marker["to"])
        if target not in ("cdc", "triggers"):
            raise ValueError(f"`to` must be 'cdc' or 'triggers', not {target!r}")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        log.error("invalid cutover marker in transaction %d ignored: %s", txn.xid, exc)
        return None
    return CutoverMarker(schema, table, "cdc" if target == "cdc" else "shadow", marker)


def cutover_record(
    change: TransactionMessage,
    txn: TransactionInfo,
    cutover: CutoverMarker,
    fields: TransactionFields,
) -> ActivityRecord:
    """The record of a cutover marker, in its transaction."""
    schema, table, mode, marker = cutover
    return ActivityRecord(
        fields.occurred_at,
        SOURCE_MIGRATION,
        "message",
        "migration.cutover" if mode == "cdc" else "migration.rollback",
        "migration",
        "notice",
        schema,
        table,
        None,
        None,
        None if marker.get("by") is None else str(marker["by"]),
        jsonb_text(marker),
        None,
        None,
        None,
        f"{schema}.{table}: recorded by "
        + ("CDC from here on" if mode == "cdc" else "the legacy triggers again"),
        txn.xid,
        fields.commit_lsn,
        change.seq,
    )
