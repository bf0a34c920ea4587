"""Catalog lookups the daemon makes while streaming: type definitions, primary keys, and
the values of types that only the server can render.

Type and key lookups happen once per new relation version (a Relation message), never per row,
on a regular (non-replication) connection to the source. The catalog answers as of now, not as
of the change being decoded; types and keys rarely change under a running daemon, and a
Relation message after an ALTER TABLE triggers a fresh lookup.

:meth:`Catalog.rendered` is the exception, and only for tables with a column of a type whose
cast to json runs in the server (PostGIS geometry's GeoJSON; cdc.pipeline.values says which):
it holds a transaction's changes, sends those values' text to the source in one statement and
gets ``to_jsonb(value)::text`` back (:meth:`Catalog.render`), before the changes are mapped.
The connection runs with the replication session's settings (``TimeZone=UTC``...), so a
rendering that depends on them (a timestamptz inside a composite) matches what the daemon
renders itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from cdc.connect import connect
from cdc.errors import ConnectError, SinkError
from cdc.pipeline.changes import (
    Change,
    RelationInfo,
    RowChange,
    TransactionEnd,
    TransactionMessage,
)
from cdc.pipeline.stream import SESSION_OPTIONS
from cdc.pipeline.values import TypeInfo, TypeRegistry
from cdc.sqlfiles import sql_text

log = logging.getLogger("cdc.catalog")  # log lines keep the name they had

# At most this many changes wait for their values to be rendered by the server (one round trip
# for them all); a transaction's changes are passed on at its end anyway.
HELD_CHANGES = 1000


class Catalog:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None
        self.primary_keys_by_oid: dict[int, tuple[str, ...] | None] = {}
        self._held: list[Change] = []  # changes waiting for the server to render values
        # relation id -> (the relation version, its server-rendered columns)
        self._server_columns: dict[int, tuple[RelationInfo, tuple[tuple[int, TypeInfo], ...]]] = {}

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._dsn)
            settings = re.findall(r"-c (\S+?)=(\S+)", SESSION_OPTIONS)
            self._conn.execute(
                "SELECT set_config(k, v, false) FROM unnest(%s::text[], %s::text[]) AS s(k, v)",
                ([k for k, _ in settings], [v for _, v in settings]),
            )
        return self._conn

    def _query(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self._run(sql_text(name), params)

    def _run(self, statement: str | sql.Composed, params: Any) -> list[tuple[Any, ...]]:
        for attempt in (1, 2):
            try:
                return self._connection().execute(statement, params).fetchall()
            except psycopg.OperationalError as exc:
                if self._conn is not None:
                    self._conn.close()
                if attempt == 2:
                    raise ConnectError(f"catalog lookup failed: {exc}") from None
        raise AssertionError("unreachable")

    def primary_key(self, relation_id: int) -> tuple[str, ...] | None:
        if relation_id not in self.primary_keys_by_oid:
            rows = self._query("primary_key_of.sql", {"oid": relation_id})
            columns = rows[0][0] if rows else None
            self.primary_keys_by_oid[relation_id] = tuple(columns) if columns else None
        return self.primary_keys_by_oid[relation_id]

    def resolve_types(self, registry: TypeRegistry, type_oids: list[int]) -> None:
        """Add to the registry every user-defined type these columns need (and their parts)."""
        for _ in range(16):  # composites of domains of arrays …: a few rounds at most
            missing = registry.missing(type_oids)
            if not missing:
                return
            rows = self._query("type_info.sql", {"oids": sorted(missing)})
            found = set()
            for oid, kind, element, base, names, types, json_cast, schema, name, delim in rows:
                fields = tuple(zip(names, map(int, types), strict=True))
                registry.add(
                    TypeInfo(int(oid), kind, int(element), int(base), fields, json_cast,
                             (schema, name), delim)
                )  # fmt: skip
                found.add(int(oid))
            for oid in missing - found:  # dropped since: render as text
                registry.add(TypeInfo(oid, "b"))
            log.debug("resolved %d type(s) from the catalog", len(rows))

    def rendered(self, registry: TypeRegistry, changes: Iterable[Change]) -> Iterator[Change]:
        """The changes, each once the values of it that only the server renders are in the
        registry's renderings: held until their transaction's end (the assembler yields a
        transaction whole, at its commit, so that adds no delay) or until ``HELD_CHANGES`` are
        held, rendered in one round trip, passed on, and forgotten. Holding spans calls: a
        change yielded by one message's feed may be passed on with the next message's."""
        held = self._held
        for change in changes:
            held.append(change)
            if (
                len(held) >= HELD_CHANGES
                or type(change) is TransactionEnd
                or (type(change) is TransactionMessage and change.transaction is None)
            ):
                self.render(registry, held)
                yield from held  # each one is mapped before the next is asked for
                held.clear()
                registry.forget_renderings()

    def render(self, registry: TypeRegistry, changes: Sequence[Change]) -> None:
        """Fill the registry's renderings with ``to_jsonb`` of every value in these changes
        that only the server can render, in one round trip; nothing when there is none."""
        texts: dict[int, dict[str, None]] = {}  # type OID -> its distinct texts, in order
        targets: dict[int, TypeInfo] = {}
        for change in changes:
            if type(change) is not RowChange:
                continue
            columns = self._columns_rendered_by_server(registry, change.relation)
            if not columns:
                continue
            for row in (change.old, change.new):
                if row is None:
                    continue
                for position, target in columns:
                    value = row[position]
                    if type(value) is str:
                        texts.setdefault(target.oid, {})[value] = None
                        targets[target.oid] = target
        if not texts:
            return
        parts = []
        params: list[list[str]] = []
        for part, oid in enumerate(texts):
            parts.append(
                sql.SQL(sql_text("cast_rendered.sql")).format(
                    part=sql.Literal(part),
                    type=sql.Identifier(*targets[oid].name),
                    texts=sql.Placeholder(),
                )
            )
            params.append(list(texts[oid]))
        statement = sql.SQL("\nUNION ALL\n").join(parts)
        try:
            rows = self._run(statement, params)
        except psycopg.Error as exc:
            # Not the server's message: it may quote a value, and values may be secrets.
            names = ", ".join(".".join(targets[oid].name) for oid in texts)
            raise SinkError(
                f"the source could not render values of type {names} through the type's cast "
                f"to json (SQLSTATE {exc.sqlstate}, {type(exc).__name__}); nothing was "
                "acknowledged: check that the type and its extension still exist on the source"
            ) from None
        oids = list(texts)
        lists = [list(texts[oid]) for oid in oids]
        for part, ordinal, rendered in rows:
            registry.renderings(oids[part])[lists[part][ordinal - 1]] = rendered
        log.debug("rendered %d value(s) through their cast to json", len(rows))

    def _columns_rendered_by_server(
        self, registry: TypeRegistry, relation: RelationInfo
    ) -> tuple[tuple[int, TypeInfo], ...]:
        cached = self._server_columns.get(relation.relation_id)
        if cached is None or cached[0] is not relation:
            cached = (relation, registry.server_columns(relation.type_oids))
            self._server_columns[relation.relation_id] = cached
        return cached[1]

    def close(self) -> None:
        self._held.clear()  # a transaction cut short: the slot sends it again
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def primary_keys(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], tuple[str, ...]]:
    """Every table's primary key columns, by (schema, table), in one query."""
    rows = conn.execute(sql_text("primary_keys.sql")).fetchall()
    return {(schema, table): tuple(columns) for schema, table, columns in rows}
