"""The platform's state (its random source, a unique tag per client run, the staff acting on
behalf of the platform), the values its rows hold, and picking existing rows to act on."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal
from typing import Any, LiteralString

from psycopg import sql

from cdc.demo.workload.transaction import Tx, statement
from cdc.demo.workload.words import FIRST_NAMES, LAST_NAMES, TEXT_WORDS

MICRO = Decimal("0.000001")


def scaled(value: Decimal, percent: int) -> Decimal:
    return (value * percent / 100).quantize(MICRO, rounding=ROUND_DOWN)


class PlatformBase:
    """What every action of the platform works with: values and existing rows."""

    def __init__(self, rng: random.Random, tag: str, staff: Sequence[int]) -> None:
        self.rng = rng
        self.tag = tag  # unique per client run: keeps emails, slugs and symbols unique
        self.staff = list(staff)
        self._seq = 0

    def _unique(self) -> str:
        self._seq += 1
        return f"{self.tag}n{self._seq}"

    def _actor(self) -> int | None:
        return self.rng.choice(self.staff) if self.staff else None

    def _person(self) -> tuple[str, str]:
        return self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)

    def _hex(self, bits: int) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def _money(self, low: int, high: int) -> Decimal:
        return Decimal(self.rng.randrange(low * 100, high * 100)) / 100

    def _text(self, size_bytes: int) -> str:
        words = self.rng.choices(TEXT_WORDS, k=max(1, size_bytes // 7))
        return " ".join(words)

    def _document_size(self, low: int, high: int) -> int:
        return int(math.exp(self.rng.uniform(math.log(low), math.log(high))))

    def _pick(
        self,
        tx: Tx,
        table: LiteralString,
        columns: LiteralString = "id",
        where: LiteralString = "true",
        params: Sequence[Any] = (),
    ) -> Any:
        """A row of ``table`` matching ``where``, chosen at random; None if none matches."""
        ident = sql.Identifier(table)
        bounds = tx.read_one(sql.SQL("SELECT min(id), max(id) FROM public.{}").format(ident))
        if bounds is None or bounds[0] is None:
            return None
        point = self.rng.randint(bounds[0], bounds[1])
        base = sql.SQL("SELECT {} FROM public.{} WHERE ({})").format(
            sql.SQL(columns), ident, sql.SQL(where)
        )
        row = tx.read_one(base + sql.SQL(" AND id >= %s ORDER BY id LIMIT 1"), [*params, point])
        if row is None:
            row = tx.read_one(base + sql.SQL(" ORDER BY id LIMIT 1"), params)
        return row

    def _pick_document(self, tx: Tx, status: str) -> Any:
        point = uuid.UUID(int=self.rng.getrandbits(128))
        query: LiteralString = "SELECT id FROM public.documents WHERE status = %s"
        row = tx.read_one(query + " AND id >= %s ORDER BY id LIMIT 1", (status, point))
        if row is None:
            row = tx.read_one(query + " ORDER BY id LIMIT 1", (status,))
        return row

    def _user_of_investor(self, tx: Tx, investor_id: int) -> int | None:
        row = tx.read_one(statement("investor_user"), (investor_id,))
        return None if row is None else row[0]
