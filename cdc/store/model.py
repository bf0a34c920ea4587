"""What the store's readers return and take: typed records, the keyset cursor, filters, and
the parsing of times and severities given on the command line. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from cdc import records
from cdc.config import Severity, split_qualified_name
from cdc.records import same_columns

# Lowest to highest; the order of the Severity literal of the config.
SEVERITIES: tuple[str, ...] = get_args(Severity)

_RELATIVE = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True, slots=True)
class RecordCursor:
    """A position in the newest-first order ``(occurred_at, commit_lsn, seq)``; printed as
    ``2026-11-26T10:00:00.123456+00:00,0/16B3748,3`` for ``--before``."""

    occurred_at: datetime
    commit_lsn: str
    seq: int

    def __str__(self) -> str:
        return f"{self.occurred_at.isoformat()},{self.commit_lsn},{self.seq}"

    @classmethod
    def parse(cls, text: str) -> RecordCursor:
        """Raises ValueError with a message for the user."""
        parts = text.split(",")
        if len(parts) != 3:
            raise ValueError(
                f"{text!r} is not a cursor; pass the value printed after a page "
                "(occurred_at,commit_lsn,seq)"
            )
        moment, lsn, seq = parts
        if not re.fullmatch(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}", lsn) or not seq.isdigit():
            raise ValueError(f"{text!r} is not a cursor: bad commit_lsn or seq")
        return cls(parse_iso(moment), lsn.upper(), int(seq))


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One row of the records table, as the readers return it (JSON columns decoded)."""

    occurred_at: datetime
    recorded_at: datetime
    source: str
    operation: str
    action: str
    category: str
    severity: str
    schema_name: str | None
    table_name: str | None
    entity_type: str | None
    entity_id: str | None
    actor_id: str | None
    context: Any
    old: Any
    new: Any
    changes: Any
    summary: str | None
    xid: int | None
    commit_lsn: str
    seq: int

    @property
    def cursor(self) -> RecordCursor:
        return RecordCursor(self.occurred_at, self.commit_lsn, self.seq)

    @property
    def table(self) -> str | None:
        if self.table_name is None:
            return None
        return f"{self.schema_name}.{self.table_name}" if self.schema_name else self.table_name

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict in column order: times as ISO 8601 text, JSON columns as they
        are (not copied: this runs once per exported row)."""
        data = {name: getattr(self, name) for name in STORED_COLUMNS}
        data["occurred_at"] = self.occurred_at.isoformat()
        data["recorded_at"] = self.recorded_at.isoformat()
        return data


STORED_COLUMNS = same_columns(
    "StoredRecord", [field.name for field in fields(StoredRecord)], records.STORED_COLUMNS
)


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """What ``cdc activity`` selects; every field given narrows the result (AND)."""

    entity_type: str | None = None
    entity_id: str | None = None
    actor_id: str | None = None
    source: str | None = None  # database, application, ...
    action: str | None = None  # kyc.approved
    category: str | None = None
    severities: tuple[str, ...] | None = None  # None: any severity
    schema_name: str | None = None  # only with table_name
    table_name: str | None = None
    operation: str | None = None
    # occurred_at >= since, < until; a timedelta is that long before the database's now()
    # when the query runs (a relative window costs no round trip for the clock)
    since: datetime | timedelta | None = None
    until: datetime | timedelta | None = None
    search: str | None = None  # full text, web search syntax: "exact phrase" or -not


def severities_for(severity: str | None, min_severity: str | None) -> tuple[str, ...] | None:
    """``--severity`` and ``--min-severity`` as the set of severities to select (None: all).
    Raises ValueError for an unknown severity."""
    for value in (severity, min_severity):
        if value is not None and value not in SEVERITIES:
            raise ValueError(f"unknown severity {value!r}; one of {', '.join(SEVERITIES)}")
    if severity is None and min_severity is None:
        return None
    chosen = SEVERITIES if severity is None else (severity,)
    if min_severity is not None:
        lowest = SEVERITIES.index(min_severity)
        chosen = tuple(s for s in chosen if SEVERITIES.index(s) >= lowest)
    return chosen


def parse_iso(text: str) -> datetime:
    """An ISO 8601 time; without an offset it is UTC. Raises ValueError."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time; give ISO 8601 (2026-11-26T10:00:00Z, 2026-11-26) "
            "or a duration ago (15m, 2h, 7d)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# Longer durations are typing mistakes; past ~2,000 years ``now - duration`` is before year 1
# (an OverflowError), and past ~2.7 million years timedelta itself overflows.
LONGEST_DURATION = timedelta(days=36_525)


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``7d``, ``2w``. Raises ValueError."""
    match = _RELATIVE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration; write it as 90s, 15m, 2h, 7d or 2w")
    try:
        length = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        length = timedelta.max
    if length > LONGEST_DURATION:
        raise ValueError(f"{text!r} is longer than 100 years, older than any record")
    return length


def parse_moment(text: str, now: datetime) -> datetime:
    """A time on the command line: ISO 8601, or a duration before ``now`` (``15m``, ``7d``)."""
    if _RELATIVE.match(text):
        return now - parse_duration(text)
    return parse_iso(text)


def parse_relative_moment(text: str) -> datetime | timedelta:
    """A time as :func:`parse_moment` reads it, a duration left as one (``15m``: a timedelta,
    that long before the database's clock when a query runs)."""
    if _RELATIVE.match(text):
        return parse_duration(text)
    return parse_iso(text)


def split_table(text: str) -> tuple[str | None, str]:
    """``schema.table`` (parts may be double-quoted) or ``table`` → (schema or None, table).
    Raises ValueError."""
    if "." in text:
        return split_qualified_name(text)
    if not text:
        raise ValueError("a table name is empty")
    return None, text
