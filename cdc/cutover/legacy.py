"""The legacy audit log the triggers write: its configured table and columns as identifiers,
its queries (``sql/triggers/legacy_*.sql``), and its rows as :mod:`cdc.cutover.verify` compares
them. ``cdc triggers status`` counts its rows with the same queries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.cutover.triggers import TableName, qualified, qualified_name
from cdc.errors import ConfigError
from cdc.sqlfiles import sql_text

PRIMARY_OPERATIONS = ("insert", "update", "delete", "truncate")

Row = dict[str, Any]


def legacy_identifiers(settings: Settings) -> dict[str, sql.Composable]:
    """The legacy log's table and columns, as the sql/triggers/legacy_*.sql templates name them."""
    m = settings.migration
    return {
        "legacy": qualified(m.legacy_schema_name, m.legacy_table_name),
        "table_name": sql.Identifier(m.legacy_table_name_column),
        "schema_name": sql.Identifier(m.legacy_schema_column)
        if m.legacy_schema_column
        else sql.SQL("NULL"),
        "schema_match": sql.SQL("{} = %(schema)s").format(sql.Identifier(m.legacy_schema_column))
        if m.legacy_schema_column
        else sql.SQL("TRUE"),
        "operation": sql.Identifier(m.legacy_operation_column),
        "txid": sql.Identifier(m.legacy_txid_column),
        "old": sql.Identifier(m.legacy_old_column),
        "new": sql.Identifier(m.legacy_new_column),
        "changed_at": sql.Identifier(m.legacy_time_column),
        "order": sql.Identifier(m.legacy_order_column),
    }


def legacy_query(settings: Settings, name: str) -> sql.Composed:
    return sql.SQL(sql_text(name)).format(**legacy_identifiers(settings))


def legacy_name_map(settings: Settings, tables: Sequence[TableName]) -> dict[str, TableName]:
    """Bare table name (what TG_TABLE_NAME writes) → the configured table. Without a schema
    column in the legacy log, two tables of one name cannot be told apart."""
    found: dict[str, TableName] = {}
    for table in tables:
        if table[1] in found and not settings.migration.legacy_schema_column:
            raise ConfigError(
                f"tables {qualified_name(*found[table[1]])} and {qualified_name(*table)} have "
                "the same name, and the legacy audit log has no schema column: set [migration] "
                "legacy_schema_column, or verify them one at a time (--table)"
            )
        found[table[1]] = table
    return found


def load_json(text: str | None) -> Any:
    return None if text is None else json.loads(text, parse_float=Decimal)


def legacy_rows(
    conn: psycopg.Connection[Any],
    settings: Settings,
    names: dict[str, TableName],
    start: datetime,
    end: datetime,
    xids: list[int] | None = None,
) -> list[Row]:
    rows = conn.execute(
        legacy_query(settings, "triggers/legacy_rows.sql"),
        {"names": list(names), "from": start, "to": end, "xids": xids},
    ).fetchall()
    found = []
    for xid, table_name, schema_name, operation, old, new, changed_at in rows:
        table = (schema_name, table_name) if schema_name is not None else names.get(table_name)
        if table is None or table not in names.values():
            continue
        found.append(
            {
                "xid": int(xid),
                "table": table,
                "operation": operation.lower()
                if operation.lower() in PRIMARY_OPERATIONS
                else operation,
                "old": load_json(old),
                "new": load_json(new),
                "at": changed_at,
            }
        )
    return found
