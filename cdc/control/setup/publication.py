"""The publication: it covers exactly the configured tables (added and removed as the config
changes, with their column lists) and publishes every operation."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.control.setup.plan import SetupPlan, Step, qualified, shown
from cdc.errors import ConfigError, SlotError
from cdc.pipeline.catalog import primary_keys

# What the publication must publish; setup restores it if someone changed it.
PUBLISH = "insert, update, delete, truncate"

# PostgreSQL 18 publishes stored generated columns when the publication says so; before 18
# pgoutput never sends them (records then lack them, where to_jsonb shows them). Virtual
# generated columns (18) are never in the WAL, so never in the records.
GENERATED_COLUMNS_SINCE = 180000

Table = tuple[str, str]


def has_generated_columns_option(server_version: int) -> bool:
    return server_version >= GENERATED_COLUMNS_SINCE


def publication_options(server_version: int) -> sql.Composed:
    """The publication's WITH options on this server."""
    options = sql.SQL("publish = {}, publish_via_partition_root").format(sql.Literal(PUBLISH))
    if has_generated_columns_option(server_version):
        options += sql.SQL(", publish_generated_columns = stored")
    return options


def plan_publication(source: psycopg.Connection[Any], settings: Settings, plan: SetupPlan) -> None:
    """The publication covers exactly the configured tables (added and removed as the config
    changes) and publishes every operation."""
    name = settings.source.publication
    wanted = {(r.schema_name, r.table_name) for r in settings.tables}
    column_lists = {(r.schema_name, r.table_name): r.columns for r in settings.tables}
    _check_column_lists(source, column_lists)
    table_list = _table_list(column_lists)
    generated = has_generated_columns_option(source.info.server_version)
    row = source.execute(
        # pubgencols exists from 18 on ('s': stored generated columns are published)
        "SELECT puballtables, pubinsert AND pubupdate AND pubdelete AND pubtruncate "
        "AND pubviaroot AND (NOT %s OR to_jsonb(p) ->> 'pubgencols' = 's') "
        "FROM pg_publication p WHERE pubname = %s",
        (generated, name),
    ).fetchone()
    options = publication_options(source.info.server_version)
    if row is None:
        # publish_via_partition_root: changes of a partitioned table are reported under the
        # table itself, so partitions added later are covered without changing anything.
        statement = sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WITH ({})").format(
            sql.Identifier(name), table_list, options
        )
        plan.steps.append(
            Step(
                kind="publication",
                target="source",
                description=f"create publication {name} for {len(wanted)} table(s)",
                done=f"created publication {name} for {len(wanted)} table(s)",
                statements=(statement.as_string(source),),
            )
        )
        return
    all_tables, publishes_all = row
    if all_tables:
        raise SlotError(
            f'publication "{name}" is FOR ALL TABLES, not the configured tables; choose '
            'another [source] publication name, or drop it ("cdc teardown") and run "cdc setup"'
        )
    _plan_tables(source, name, column_lists, table_list, plan)
    if not publishes_all:
        statement = sql.SQL("ALTER PUBLICATION {} SET ({})").format(sql.Identifier(name), options)
        what = PUBLISH + (" and stored generated columns" if generated else "")
        plan.steps.append(
            Step(
                kind="publication",
                target="source",
                description=f"publication {name}: publish {what}",
                done=f"publication {name} now publishes {what}",
                statements=(statement.as_string(source),),
            )
        )


def _check_column_lists(
    source: psycopg.Connection[Any], column_lists: dict[Table, tuple[str, ...] | None]
) -> None:
    if any(column_lists.values()) and source.info.server_version < 150000:
        raise ConfigError(
            "[[tables]] columns needs PostgreSQL 15 or later (publication column lists)"
        )
    keys = primary_keys(source)
    for (schema, table), columns in column_lists.items():
        if not columns:
            continue
        # The server refuses UPDATE/DELETE on the table when the list does not cover the
        # replica identity: the list must hold the key, and the identity stays the key.
        key = keys.get((schema, table))
        if not key or not set(key) <= set(columns):
            raise ConfigError(
                f"[[tables]] {schema}.{table}: a column list must include the primary key "
                f"({', '.join(key) if key else 'the table has none'}), or the application's "
                "updates and deletes would fail"
            )


def _table_list(column_lists: dict[Table, tuple[str, ...] | None]) -> sql.Composable:
    """FOR TABLE's list: each table with its column list, if it has one."""

    def published(schema: str, table: str) -> sql.Composable:
        columns = column_lists[(schema, table)]
        if not columns:
            return qualified(schema, table)
        return sql.SQL("{} ({})").format(
            qualified(schema, table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )

    return sql.SQL(", ").join(published(s, t) for s, t in sorted(column_lists))


def _plan_tables(
    source: psycopg.Connection[Any],
    name: str,
    column_lists: dict[Table, tuple[str, ...] | None],
    table_list: sql.Composable,
    plan: SetupPlan,
) -> None:
    """SET TABLE when the published tables (or their column lists) are not the configured."""
    wanted = set(column_lists)
    current = {
        (schema, table)
        for schema, table in source.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (name,)
        )
    }
    # A column list that differs (or appeared, or went) needs SET TABLE as well.
    columns_differ = source.info.server_version >= 150000 and any(
        _published_columns(source, name, schema, table)
        != (frozenset(column_lists[(schema, table)] or ()) or None)
        for schema, table in current & wanted
    )
    if current == wanted and not columns_differ:
        plan.unchanged.append(f"publication {name} covers exactly the {len(wanted)} table(s)")
        return
    added = sorted(f"{s}.{t}" for s, t in wanted - current)
    removed = sorted(f"{s}.{t}" for s, t in current - wanted)
    change = []
    if added:
        change.append(f"add {shown(added)}")
    if removed:
        change.append(f"remove {shown(removed)}")
    statement = sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(
        sql.Identifier(name), table_list
    )
    plan.steps.append(
        Step(
            kind="publication",
            target="source",
            description=f"publication {name}: " + "; ".join(change),
            done=f"publication {name}: added {len(added)} table(s), removed {len(removed)}"
            + (f" ({'; '.join(change)})" if change else ""),
            statements=(statement.as_string(source),),
        )
    )


def _published_columns(
    source: psycopg.Connection[Any], publication: str, schema: str, table: str
) -> frozenset[str] | None:
    """The publication's column list for a table (None: all columns). PostgreSQL 15+."""
    row = source.execute(
        "SELECT (SELECT array_agg(a.attname::text) FROM pg_attribute a "
        "        WHERE a.attrelid = pr.prrelid AND a.attnum = ANY(pr.prattrs)) "
        "FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid "
        "WHERE p.pubname = %s AND pr.prrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s)",
        (publication, schema, table),
    ).fetchone()
    return frozenset(row[0]) if row and row[0] else None
