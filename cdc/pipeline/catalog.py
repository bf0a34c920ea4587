"""Catalog lookups the daemon makes while streaming: type definitions and primary keys.

They happen once per new relation version (a Relation message), never per row, on a regular
(non-replication) connection to the source. The catalog answers as of now, not as of the
change being decoded; types and keys rarely change under a running daemon, and a Relation
message after an ALTER TABLE triggers a fresh lookup.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from cdc.connect import connect
from cdc.errors import ConnectError
from cdc.pipeline.values import TypeInfo, TypeRegistry
from cdc.sqlfiles import sql_text

log = logging.getLogger("cdc.catalog")  # log lines keep the name they had


class Catalog:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None
        self.primary_keys_by_oid: dict[int, tuple[str, ...] | None] = {}

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._dsn)
        return self._conn

    def _query(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        for attempt in (1, 2):
            try:
                return self._connection().execute(sql_text(name), params).fetchall()
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
            for oid, kind, element, base, names, types in rows:
                registry.add(TypeInfo(int(oid), kind, int(element), int(base),
                                      tuple(zip(names, map(int, types), strict=True))))  # fmt: skip
                found.add(int(oid))
            for oid in missing - found:  # dropped since: render as text
                registry.add(TypeInfo(oid, "b"))
            log.debug("resolved %d type(s) from the catalog", len(rows))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
