"""What ``cdc verify`` found: the differences, per table and in total, as text and JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from cdc.cutover.triggers import TableName, qualified_name

MAX_EXAMPLES = 20  # differences listed per table


@dataclass(frozen=True)
class Difference:
    """One thing that does not match: a row on one side only, or a column's value."""

    kind: str  # missing_in_cdc | missing_in_legacy | value
    xid: int
    operation: str
    key: tuple[Any, ...] | None
    image: str | None = None  # old | new (value differences)
    column: str | None = None
    legacy: Any = None
    cdc: Any = None

    def describe(self) -> str:
        key = "(no key)" if self.key is None else ", ".join(map(str, self.key))
        where = f"xid {self.xid} {self.operation} [{key}]"
        if self.kind == "missing_in_cdc":
            return f"{where}: legacy audit row without an activity record"
        if self.kind == "missing_in_legacy":
            return f"{where}: activity record without a legacy audit row"
        if self.kind == "after_cutover":
            return f"{where}: legacy audit row after the table's cutover (recorded twice)"
        return (
            f"{where}: {self.image}.{self.column}: legacy {_shown(self.legacy)}, "
            f"cdc {_shown(self.cdc)}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "xid": self.xid,
            "operation": self.operation,
            "key": _jsonable(list(self.key)) if self.key is not None else None,
            "image": self.image,
            "column": self.column,
            "legacy": _jsonable(self.legacy),
            "cdc": _jsonable(self.cdc),
        }


@dataclass
class TableReport:
    table: TableName
    matched: int = 0  # row changes on both sides (with or without value differences)
    missing_in_cdc: int = 0
    missing_in_legacy: int = 0
    value_differences: int = 0  # matched row changes with at least one differing column
    derived: int = 0  # legacy rows of other operations (STATUS_CHANGE, AMOUNT_CHANGE ...)
    ignored: int = 0  # legacy updates of ignored columns only: no record by design
    live: int = 0  # records after the table's cutover: CDC alone records them (not compared)
    after_cutover: int = 0  # legacy rows of changes after the cutover: recorded twice
    skipped: str | None = None  # why the table was not compared
    differences: list[Difference] = field(default_factory=list)  # the first MAX_EXAMPLES

    @property
    def name(self) -> str:
        return qualified_name(*self.table)

    @property
    def ok(self) -> bool:
        return not (
            self.missing_in_cdc
            or self.missing_in_legacy
            or self.value_differences
            or self.after_cutover
        )

    def add(self, difference: Difference) -> None:
        if len(self.differences) < MAX_EXAMPLES:
            self.differences.append(difference)

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.name,
            "ok": self.ok,
            "matched": self.matched,
            "missing_in_cdc": self.missing_in_cdc,
            "missing_in_legacy": self.missing_in_legacy,
            "value_differences": self.value_differences,
            "derived": self.derived,
            "ignored": self.ignored,
            "live": self.live,
            "after_cutover": self.after_cutover,
            "skipped": self.skipped,
            "differences": [d.as_json() for d in self.differences],
        }


@dataclass
class VerifyReport:
    since: datetime
    until: datetime
    up_to_lsn: str  # records committed before this LSN were compared
    tables: list[TableReport]

    @property
    def ok(self) -> bool:
        return all(table.ok for table in self.tables)

    def total(self, name: str) -> int:
        return sum(int(getattr(table, name)) for table in self.tables)

    def summary(self) -> str:
        failing = [t.name for t in self.tables if not t.ok]
        counts = ", ".join(
            f"{self.total(n)} {n.replace('_', ' ')}"
            for n in (
                "matched",
                "missing_in_cdc",
                "missing_in_legacy",
                "value_differences",
                "after_cutover",
            )
        )
        verdict = "no differences" if not failing else f"differences in {', '.join(failing)}"
        return (
            f"verify {self.since.isoformat()} .. {self.until.isoformat()} (records before "
            f"{self.up_to_lsn}): {counts}; {self.total('derived')} derived, "
            f"{self.total('ignored')} ignored, {self.total('live')} live: {verdict}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "up_to_lsn": self.up_to_lsn,
            "totals": {
                name: self.total(name)
                for name in (
                    "matched",
                    "missing_in_cdc",
                    "missing_in_legacy",
                    "value_differences",
                    "derived",
                    "ignored",
                    "live",
                    "after_cutover",
                )
            },
            "tables": [table.as_json() for table in self.tables],
        }


def _shown(value: Any, limit: int = 80) -> str:
    text = json.dumps(_jsonable(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
