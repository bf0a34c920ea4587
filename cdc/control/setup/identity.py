"""REPLICA IDENTITY FULL on the configured tables and their partitions (so updates and
deletes carry the whole old row), and the configured tables as the source's catalog has them."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.control.setup.plan import SetupPlan, Step, qualified, shown
from cdc.errors import ConfigError


def table_oids(
    conn: psycopg.Connection[Any], settings: Settings
) -> dict[tuple[str, str], tuple[int, str]]:
    """OID and replica identity of each configured table; unknown tables are a ConfigError."""
    found: dict[tuple[str, str], tuple[int, str]] = {}
    missing = []
    for rules in settings.tables:
        row = conn.execute(
            "SELECT c.oid, c.relreplident::text FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
            (rules.schema_name, rules.table_name),
        ).fetchone()
        if row is None:
            missing.append(rules.name)
        else:
            found[(rules.schema_name, rules.table_name)] = (int(row[0]), str(row[1]))
    if missing:
        raise ConfigError(
            f"{len(missing)} configured table(s) do not exist in the source database: "
            + ", ".join(missing)
            + "; create them or remove them from [[tables]]"
        )
    return found


def plan_replica_identity(
    source: psycopg.Connection[Any], settings: Settings, plan: SetupPlan
) -> None:
    """REPLICA IDENTITY FULL, so updates and deletes carry the whole old row (the diff and the
    value of unchanged TOASTed columns come from it)."""
    tables = table_oids(source, settings)
    # A partitioned table's changes happen in its partitions: each needs FULL as well.
    partitions = source.execute(
        "SELECT n.nspname, c.relname, c.relreplident::text FROM unnest(%s::oid[]) AS root(oid) "
        "CROSS JOIN LATERAL pg_partition_tree(root.oid) p "
        "JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE p.relid <> root.oid AND c.relkind = 'r'",
        ([oid for oid, _identity in tables.values()],),
    ).fetchall()
    # Tables with a column list keep their primary-key identity (see plan_publication).
    listed = {(r.schema_name, r.table_name) for r in settings.tables if r.columns}
    identities = {key: identity for key, (_oid, identity) in tables.items() if key not in listed}
    identities.update({(schema, table): identity for schema, table, identity in partitions})
    changed = sorted(key for key, identity in identities.items() if identity != "f")
    if not changed:
        plan.unchanged.append(f"all {len(tables)} table(s) have REPLICA IDENTITY FULL")
        return
    names = shown([f"{schema}.{table}" for schema, table in changed])
    plan.steps.append(
        Step(
            kind="replica_identity",
            target="source",
            description=f"set REPLICA IDENTITY FULL on {len(changed)} table(s): {names}",
            done=f"set REPLICA IDENTITY FULL on {len(changed)} table(s): {names}",
            statements=tuple(
                sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL")
                .format(qualified(schema, table))
                .as_string(source)
                for schema, table in changed
            ),
        )
    )
