"""The indexes of the records table that setup creates and the readers rely on."""

from __future__ import annotations

from typing import Any

import psycopg


def values_search_indexes(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    """The GIN indexes of the records table over ``search_vector(summary, new, old, changes)``
    (full-text search over the row values, ``[store] search_values``), qualified names."""
    rows = conn.execute(
        "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s AND t.relname = %s AND a.amname = 'gin' "
        "AND pg_get_indexdef(i.indexrelid) LIKE '%%search_vector(%%' ORDER BY 1",
        (schema, table),
    ).fetchall()
    return [row[0] for row in rows]
