"""The query parameters of the JSON API, validated by pydantic and turned into the store's
values (:class:`~cdc.store.RecordFilter`, :class:`~cdc.store.RecordCursor`). Named like the
options of ``cdc activity``; parsed by the same functions (cdc.store.model), so a time, a table
or a cursor means the same on the command line and in a URL. Pure.

A bad value is a ValueError whose message says what is expected: the app answers it with 400
and that one line.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from cdc.store import (
    DIMENSIONS,
    RecordCursor,
    RecordFilter,
    parse_duration,
    parse_moment,
    parse_relative_moment,
    severities_for,
    split_table,
)

Severity = Literal["debug", "info", "notice", "warning", "error", "critical"]
Operation = Literal["insert", "update", "delete", "truncate", "message"]
Dimension = Literal["source", "category", "severity", "table", "operation"]
ALL_DIMENSIONS: tuple[Dimension, ...] = ("source", "category", "severity", "operation", "table")
assert set(DIMENSIONS) == set(ALL_DIMENSIONS)

MAX_PAGE = 1000
LONGEST_STATS_WINDOW = timedelta(days=400)
_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refuse it here rather than fail in the driver
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _moment(value: str) -> str:
    parse_moment(value, datetime.now(UTC))  # resolved against the database's clock later
    return value


def _table(value: str) -> str:
    split_table(value)
    return value


def _cursor(value: str) -> str:
    RecordCursor.parse(value)
    return value


def _position(value: str) -> str:
    lsn, _, seq = value.partition(",")
    if not _LSN.match(lsn) or not seq.isdigit():
        raise ValueError(f"{value!r} is not a position; give commit_lsn,seq (16/B374D848,3)")
    return value


def _lsn(value: str) -> str:
    if not _LSN.match(value):
        raise ValueError(f"{value!r} is not an LSN; write it as 16/B374D848")
    return value.upper()


def _duration(value: str) -> str:
    length = parse_duration(value)
    if not timedelta(0) < length <= LONGEST_STATS_WINDOW:
        raise ValueError("give a window longer than zero and at most 400d")
    return value


Text = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_text)]
Moment = Annotated[str, Field(max_length=64), AfterValidator(_moment)]


class RecordParams(BaseModel):
    """What selects records: the filters of ``cdc activity`` (AND)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    since: Moment | None = Field(None, description="ISO 8601, or a duration ago: 15m, 24h, 7d")
    until: Moment | None = Field(None, description="Before this time; same forms as since")
    source: Text | None = Field(None, description="database, application, ...")
    category: Text | None = None
    severity: Severity | None = Field(None, description="Exactly this severity")
    min_severity: Severity | None = Field(None, description="This severity or higher")
    operation: Operation | None = None
    table: Annotated[Text, AfterValidator(_table)] | None = Field(
        None, description="schema.table, or a table's bare name"
    )
    entity_type: Text | None = None
    entity_id: Text | None = None
    actor: Text | None = None
    action: Text | None = None
    search: Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_text)] | None = (
        Field(None, description='Full text: words, "a phrase", -not, or')
    )

    def record_filter(self, now: datetime | None = None) -> RecordFilter:
        """The store's filter. Relative times (``since=24h``) count back from ``now`` if
        given, else from the database's clock when the query runs (no round trip for it)."""
        schema_name, table_name = split_table(self.table) if self.table else (None, None)
        return RecordFilter(
            entity_type=self.entity_type,
            entity_id=self.entity_id,
            actor_id=self.actor,
            source=self.source,
            action=self.action,
            category=self.category,
            severities=severities_for(self.severity, self.min_severity),
            schema_name=schema_name,
            table_name=table_name,
            operation=self.operation,
            since=self._moment(self.since, now),
            until=self._moment(self.until, now),
            search=self.search,
        )

    @staticmethod
    def _moment(text: str | None, now: datetime | None) -> datetime | timedelta | None:
        if text is None:
            return None
        return parse_relative_moment(text) if now is None else parse_moment(text, now)


class PageParams(RecordParams):
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 100
    after: Annotated[str, Field(max_length=128), AfterValidator(_cursor)] | None = Field(
        None, description="The keyset cursor: the `next` of the page before"
    )

    @property
    def cursor(self) -> RecordCursor | None:
        return None if self.after is None else RecordCursor.parse(self.after)


class ExportParams(RecordParams):
    format: Literal["csv", "jsonl"] = "jsonl"
    limit: Annotated[int, Field(ge=1)] | None = Field(None, description="At most; default all")


class LiveParams(RecordParams):
    since_position: Annotated[str, Field(max_length=64), AfterValidator(_position)] | None = Field(
        None,
        alias="from",
        description="Records written after this position (commit_lsn,seq): the `live_from` "
        "of the first page",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def position(self) -> tuple[str, int] | None:
        if self.since_position is None:
            return None
        lsn, _, seq = self.since_position.partition(",")
        return lsn.upper(), int(seq)


class RecordKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lsn: Annotated[str, Field(max_length=17), AfterValidator(_lsn)]
    seq: Annotated[int, Field(ge=0, le=2**31 - 1)]


class StatsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    since: Annotated[str, Field(max_length=16), AfterValidator(_duration)] = Field(
        "24h", description="The window: 15m, 6h, 7d, 30d (at most 400d)"
    )
    by: list[Dimension] = Field(default_factory=lambda: list(ALL_DIMENSIONS), max_length=5)

    @property
    def length(self) -> timedelta:
        return parse_duration(self.since)


class HistoryParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    entity_type: Text | None = Field(None, description="Default: the table's, from the config")
