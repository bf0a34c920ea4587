"""One transaction of the workload: its statements (kept in ``sql/demo/``, loaded by name) and
the rows each one changed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from cdc.demo.workload.truth import Key
from cdc.sqlfiles import sql_text

Query = LiteralString | bytes | sql.SQL | sql.Composed


def statement(name: str) -> str:
    """The workload's statement ``sql/demo/<name>.sql``."""
    return sql_text(f"demo/{name}.sql")


class Tx:
    """Runs the statements of one open transaction and counts the rows each one changed."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.cur: psycopg.Cursor[Any] = conn.cursor()
        self.counts: Counter[Key] = Counter()
        self._savepoints: list[tuple[sql.Identifier, Counter[Key]]] = []
        self._savepoint_seq = 0

    def write(self, table: str, operation: str, query: Query, params: Sequence[Any] = ()) -> Any:
        """Run an INSERT/UPDATE/DELETE on ``table``; return its RETURNING rows (else [])."""
        self.cur.execute(query, params)
        if self.cur.rowcount > 0:
            self.counts[(table, operation)] += self.cur.rowcount
        return self.cur.fetchall() if self.cur.description is not None else []

    def read(self, query: Query, params: Sequence[Any] = ()) -> list[Any]:
        return self.cur.execute(query, params).fetchall()

    def read_one(self, query: Query, params: Sequence[Any] = ()) -> Any:
        return self.cur.execute(query, params).fetchone()

    def savepoint(self) -> None:
        self._savepoint_seq += 1
        name = sql.Identifier(f"sp_{self._savepoint_seq}")
        self.cur.execute(sql.SQL("SAVEPOINT {}").format(name))
        self._savepoints.append((name, Counter(self.counts)))

    def rollback_to_savepoint(self) -> None:
        name, counts = self._savepoints.pop()
        self.cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(name))
        self.cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(name))
        self.counts = counts

    def release_savepoint(self) -> None:
        name, _ = self._savepoints.pop()
        self.cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(name))

    def txid(self) -> int:
        row = self.read_one("SELECT txid_current()")
        return int(row[0])
