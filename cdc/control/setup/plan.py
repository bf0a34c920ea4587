"""What ``cdc setup`` plans: a :class:`SetupPlan` of :class:`Step` s (each with a description
and the exact SQL it would run), and what applying it did (:class:`SetupReport`). The helpers
every plan uses are here too."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql

log = logging.getLogger("cdc.provision")  # log lines keep the name they had

Target = Literal["source", "sink"]


@dataclass(frozen=True)
class Step:
    """One change setup would make: where, what (``description``), and the exact SQL."""

    kind: Literal["store", "publication", "replica_identity", "slot", "context"]
    target: Target
    description: str  # imperative: "create publication ..."
    done: str  # past tense, for the report: "created publication ..."
    statements: tuple[str, ...]
    transaction: bool = False  # run all statements in one transaction
    replication: bool = False  # a replication command: on a replication connection


@dataclass
class SetupPlan:
    source: str  # host:port/dbname, no secrets
    sink: str
    steps: list[Step] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # what is already in place

    def script(self) -> str:
        """The plan as one SQL script with a comment per step (what ``--dry-run`` prints)."""
        lines = [f"-- cdc setup: {len(self.steps)} step(s); source {self.source}, sink {self.sink}"]
        for number, step in enumerate(self.steps, 1):
            where = self.source if step.target == "source" else self.sink
            lines.append(f"\n-- {number}. {step.description} (on {step.target} {where})")
            if step.replication:
                lines.append(
                    "-- a replication command: run it on a replication=database connection"
                )
            if step.transaction:
                lines.append("BEGIN;")
            for statement in step.statements:
                text = statement.strip()
                lines.append(text if text.endswith(";") else text + ";")
            if step.transaction:
                lines.append("COMMIT;")
        for text in self.unchanged:
            lines.append(f"-- already in place: {text}")
        return "\n".join(lines) + "\n"


@dataclass
class SetupReport:
    actions: list[str] = field(default_factory=list)  # what was changed
    unchanged: list[str] = field(default_factory=list)  # what was already in place

    def did(self, text: str) -> None:
        log.debug("setup: %s", text)
        self.actions.append(text)

    def kept(self, text: str) -> None:
        self.unchanged.append(text)


def qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def shown(names: list[str], limit: int = 4) -> str:
    extra = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {extra} more" if extra > 0 else "")


def relation_exists(conn: psycopg.Connection[Any], schema: str, name: str) -> bool:
    """Catalog lookup that needs no privilege on the schema (unlike ``to_regclass``)."""
    row = conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return row is not None
