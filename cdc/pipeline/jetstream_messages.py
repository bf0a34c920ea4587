"""What a record becomes on JetStream; the JetStream sink writes it and ``cdc ingest`` reads it:

* the subject of a record: ``<prefix>.<source>.<schema>.<table>.<operation>`` (tokens escaped so
  a quoted identifier holding a dot or a space stays one token);
* its ``Nats-Msg-Id``: ``<database system id>:<slot>:<commit_lsn>:<seq>``, what JetStream
  de-duplicates on;
* its payload: the record as one JSON object whose JSON columns (``context``, ``old``, ``new``,
  ``changes``; left out when NULL) are embedded as the exact text the mapping produced, and
  read back as that text
  (:func:`decode_payload`), so a value the store receives is byte for byte what the PostgreSQL
  sink would have written (``1.50`` stays ``1.50``);
* the bucket key of a source's checkpoint.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cdc.errors import first_line
from cdc.pipeline.activity import ActivityRecord

MSG_ID = "Nats-Msg-Id"

_TOKEN_SAFE = re.compile(r"^[A-Za-z0-9_$-]+$")


def subject_token(name: str | None) -> str:
    """A subject token for a name: as is when it holds only ``[A-Za-z0-9_$-]``, else each other
    byte percent-encoded (``.``, spaces, ``*`` and ``>`` cannot appear in a token). ``_`` for
    none (an application message has no table)."""
    if not name:
        return "_"
    if _TOKEN_SAFE.match(name):
        return name
    return "".join(
        ch if _TOKEN_SAFE.match(ch) else "".join(f"%{b:02X}" for b in ch.encode()) for ch in name
    )


def subject_for(prefix: str, source: str, record: ActivityRecord) -> str:
    return (
        f"{prefix}.{source}.{subject_token(record.schema_name)}."
        f"{subject_token(record.table_name)}.{record.operation}"
    )


def checkpoint_key(system_id: str, slot: str) -> str:
    """The bucket key of one source's checkpoint (its cluster and slot)."""
    return f"checkpoint.{system_id}.{slot}"


def message_id(system_id: str, slot: str, record: ActivityRecord) -> str:
    return f"{system_id}:{slot}:{record.commit_lsn}:{record.seq}"


def source_of(headers: dict[str, str] | None) -> str:
    """The source (``<system id>:<slot>``) of a message, from its id; '' when it has none."""
    msg_id = (headers or {}).get(MSG_ID, "")
    return msg_id.rsplit(":", 2)[0] if msg_id.count(":") >= 3 else ""


_dumps = json.JSONEncoder(ensure_ascii=False).encode


def _text(value: str | None) -> str:
    return "null" if value is None else _dumps(value)


def _raw(name: str, value: str | None) -> str:
    # A JSON column that is NULL is left out: its text could itself be the JSON `null`.
    return "" if value is None else f',"{name}":{value}'


def encode_payload(record: ActivityRecord, source: str) -> bytes:
    """The record as a JSON object; the JSON columns embedded as the text they hold."""
    r = record
    return (
        f'{{"source_database":{_dumps(source)},"occurred_at":{_dumps(r.occurred_at)},'
        f'"source":{_dumps(r.source)},"operation":{_dumps(r.operation)},'
        f'"action":{_dumps(r.action)},"category":{_dumps(r.category)},'
        f'"severity":{_dumps(r.severity)},"schema_name":{_text(r.schema_name)},'
        f'"table_name":{_text(r.table_name)},"entity_type":{_text(r.entity_type)},'
        f'"entity_id":{_text(r.entity_id)},"actor_id":{_text(r.actor_id)}'
        f"{_raw('context', r.context)}{_raw('old', r.old)}{_raw('new', r.new)}"
        f'{_raw("changes", r.changes)},"summary":{_text(r.summary)},'
        f'"xid":{"null" if r.xid is None else r.xid},"commit_lsn":{_dumps(r.commit_lsn)},'
        f'"seq":{r.seq}}}'
    ).encode()


_RAW_COLUMNS = frozenset(("context", "old", "new", "changes"))
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, at: int) -> int:
    """The index of the first non-whitespace character at or after ``at``."""
    match = _WHITESPACE.match(text, at)
    return match.end() if match else at


_scan = json.JSONDecoder().raw_decode


class PayloadError(ValueError):
    """A message's payload is not a record this version understands."""


def _members(text: str) -> dict[str, tuple[Any, str]]:
    """The members of a JSON object: name -> (value, the value's exact text)."""
    at = _skip(text, 0)
    if text[at : at + 1] != "{":
        raise PayloadError("not a JSON object")
    at = _skip(text, at + 1)
    members: dict[str, tuple[Any, str]] = {}
    if text[at : at + 1] == "}":
        return members
    while True:
        name, at = _scan(text, at)
        if not isinstance(name, str):
            raise PayloadError("member name is not a string")
        at = _skip(text, at)
        if text[at : at + 1] != ":":
            raise PayloadError("':' expected")
        start = _skip(text, at + 1)
        value, at = _scan(text, start)
        members[name] = (value, text[start:at])
        at = _skip(text, at)
        sep = text[at : at + 1]
        if sep == "}":
            return members
        if sep != ",":
            raise PayloadError("',' or '}' expected")
        at = _skip(text, at + 1)


def decode_payload(data: bytes) -> ActivityRecord:
    """The record a payload of :func:`encode_payload` carries; PayloadError if it is not one."""
    try:
        members = _members(data.decode())
        values: list[Any] = []
        for name in ActivityRecord._fields:
            if name in _RAW_COLUMNS:
                member = members.get(name)
                values.append(None if member is None else member[1])
            else:
                values.append(members[name][0])
        record = ActivityRecord(*values)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError) as exc:
        raise PayloadError(f"not an activity record: {first_line(exc)}") from None
    if not isinstance(record.seq, int) or not isinstance(record.commit_lsn, str):
        raise PayloadError("not an activity record: commit_lsn or seq has the wrong type")
    return record
