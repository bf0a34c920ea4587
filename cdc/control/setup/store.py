"""The activity store's part of the plan: the versioned migrations (each applied once and
recorded in ``<schema>.schema_migrations``), the full-text index over the values, and each
table's capture mode."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.control.setup.plan import SetupPlan, Step, relation_exists, shown
from cdc.sqlfiles import sql_path, sql_template
from cdc.store.indexes import values_search_indexes

MIGRATIONS_DIR = "migrations"


def migration_files() -> list[tuple[int, str]]:
    files = sorted(sql_path(MIGRATIONS_DIR).glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return [(int(path.name[:4]), path.name) for path in files]


def migration_identifiers(settings: Settings) -> dict[str, str]:
    """The identifiers the migration templates may use."""
    table = settings.sink.table_name
    return {
        "schema": settings.sink.schema_name,
        "records": table,
        "checkpoints": "checkpoints",
        "records_pkey": f"{table}_pkey",
        "records_occurred_at_idx": f"{table}_occurred_at_idx",
        "records_entity_idx": f"{table}_entity_idx",
        "records_chain_head": f"{table}_chain_head",
    }


def applied_migrations(conn: psycopg.Connection[Any], schema: str) -> set[int]:
    """Versions recorded in ``<schema>.schema_migrations`` (empty when it does not exist)."""
    if not relation_exists(conn, schema, "schema_migrations"):
        return set()
    query = sql.SQL("SELECT version FROM {}.schema_migrations").format(sql.Identifier(schema))
    return {int(row[0]) for row in conn.execute(query)}


def plan_store(sink: psycopg.Connection[Any], settings: Settings, plan: SetupPlan) -> None:
    """The activity store: versioned migrations, each applied once and recorded."""
    schema = settings.sink.schema_name
    ident = sql.Identifier(schema)
    if not relation_exists(sink, schema, "schema_migrations"):
        plan.steps.append(
            Step(
                kind="store",
                target="sink",
                description=f"create the migration log {schema}.schema_migrations",
                done=f"created the migration log {schema}.schema_migrations",
                statements=(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident).as_string(sink),
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {}.schema_migrations (version integer "
                        "PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL "
                        "DEFAULT now())"
                    )
                    .format(ident)
                    .as_string(sink),
                ),
                transaction=True,
            )
        )
    applied = applied_migrations(sink, schema)
    identifiers = migration_identifiers(settings)
    stored: int | None = None  # records in the store, estimated: asked once, when it matters
    for version, name in migration_files():
        if version in applied:
            plan.unchanged.append(f"migration {name} already applied")
            continue
        rebuilds = rebuilt_by(name)
        lock = ""
        if rebuilds:
            if stored is None:
                stored = estimated_records(sink, schema, settings.sink.table_name)
            if stored:
                lock = (
                    f"; it locks the ~{stored:,} records while it builds {rebuilds}: "
                    "the daemon's writes wait"
                )
        record = sql.SQL("INSERT INTO {}.schema_migrations (version, name) VALUES ({}, {})").format(
            ident, sql.Literal(version), sql.Literal(name)
        )
        plan.steps.append(
            Step(
                kind="store",
                target="sink",
                description=f"apply migration {name} to {settings.sink.table}{lock}",
                done=f"applied migration {name} to {settings.sink.table}",
                statements=(
                    sql_template(f"{MIGRATIONS_DIR}/{name}", **identifiers).as_string(sink),
                    record.as_string(sink),
                ),
                transaction=True,
            )
        )
    plan_values_search(sink, settings, plan, applied)


REBUILDS_MARK = "-- rebuilds: "


def rebuilt_by(name: str) -> str | None:
    """What a migration builds again on every partition of the records (its ``-- rebuilds:``
    line), for the plan to warn of the lock on a store that holds records."""
    for line in sql_path(f"{MIGRATIONS_DIR}/{name}").read_text(encoding="utf-8").splitlines():
        if line.startswith(REBUILDS_MARK):
            return line[len(REBUILDS_MARK) :].strip()
    return None


def estimated_records(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    """The records in the store, as the planner's statistics estimate them (0: none yet, or
    no store)."""
    if not relation_exists(conn, schema, table):
        return 0
    row = conn.execute(
        "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint "
        "FROM pg_partition_tree(format('%%I.%%I', %s::text, %s::text)::regclass) AS t "
        "JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf",
        (schema, table),
    ).fetchone()
    return int(row[0]) if row else 0


# The migrations that drop the index over the values (0012_search_summary.sql; and
# 0022_json_documents.sql, which makes it again over json).
SEARCH_SUMMARY_MIGRATION = 12
JSON_DOCUMENTS_MIGRATION = 22


def plan_values_search(
    sink: psycopg.Connection[Any], settings: Settings, plan: SetupPlan, applied: set[int]
) -> None:
    """``[store] search_values``: full-text search over the row values needs its GIN index
    (created after the migrations, which drop it); without the setting it is dropped, since it
    costs most of the server's work of writing a record (docs/store.md)."""
    schema, table = settings.sink.schema_name, settings.sink.table_name
    existing = values_search_indexes(sink, schema, table)
    if not {SEARCH_SUMMARY_MIGRATION, JSON_DOCUMENTS_MIGRATION} <= applied:
        existing = []  # a pending migration drops them
    if settings.store.search_values and not existing:
        statement = sql.SQL(
            "CREATE INDEX ON {}.{} USING gin ({}.search_vector(summary, new, old, changes))"
        ).format(sql.Identifier(schema), sql.Identifier(table), sql.Identifier(schema))
        plan.steps.append(
            Step(
                kind="store",
                target="sink",
                description=f"create the full-text index over the values of {settings.sink.table}"
                " ([store] search_values)",
                done=f"created the full-text index over the values of {settings.sink.table}",
                statements=(statement.as_string(sink),),
            )
        )
    elif not settings.store.search_values and existing:
        plan.steps.append(
            Step(
                kind="store",
                target="sink",
                description=f"drop the full-text index over the values {', '.join(existing)} "
                "([store] search_values is off; the summary stays searchable)",
                done=f"dropped the full-text index over the values {', '.join(existing)}",
                statements=tuple(f"DROP INDEX {name}" for name in existing),
                transaction=True,
            )
        )
    elif existing:
        plan.unchanged.append(f"full-text index over the values {', '.join(existing)}")


# PostgreSQL 18 publishes stored generated columns when the publication says so; before 18
# pgoutput never sends them (records then lack them, where to_jsonb shows them). Virtual


def plan_capture_modes(
    source: psycopg.Connection[Any],
    sink: psycopg.Connection[Any],
    settings: Settings,
    plan: SetupPlan,
) -> None:
    """Each table's mode from where the stream starts: a table its legacy audit triggers
    still record is 'shadow' until a cutover marker moves it. Fixed here, next to the slot,
    because the daemon resumes from the stream, not from the catalog as it is when it starts."""
    from cdc.cutover.triggers import audited_tables  # the trigger catalog of cdc triggers

    schema = settings.sink.schema_name
    known: set[tuple[str, str]] = set()
    if relation_exists(sink, schema, "capture_modes"):
        known = {
            (row[0], row[1])
            for row in sink.execute(
                sql.SQL("SELECT schema_name, table_name FROM {}.capture_modes").format(
                    sql.Identifier(schema)
                )
            )
        }
    missing = sorted(
        (r.schema_name, r.table_name)
        for r in settings.tables
        if (r.schema_name, r.table_name) not in known
    )
    if not missing:
        return
    audited = audited_tables(source, settings)
    insert = sql.SQL(
        "INSERT INTO {}.capture_modes (schema_name, table_name, mode, since_commit_lsn) "
        "VALUES ({}, {}, {}, '0/0') ON CONFLICT DO NOTHING"
    )
    shadow = [f"{s}.{t}" for s, t in missing if (s, t) in audited]
    plan.steps.append(
        Step(
            kind="store",
            target="sink",
            description=f"record the capture mode of {len(missing)} table(s) "
            f"({len(shadow)} still audited by triggers: shadow)",
            done=f"recorded the capture mode of {len(missing)} table(s): "
            + (f"shadow for {shown(shadow)}, " if shadow else "")
            + "cdc for the others",
            statements=tuple(
                insert.format(
                    sql.Identifier(schema),
                    sql.Literal(s),
                    sql.Literal(t),
                    sql.Literal("shadow" if (s, t) in audited else "cdc"),
                ).as_string(sink)
                for s, t in missing
            ),
            transaction=True,
        )
    )
