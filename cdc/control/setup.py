"""Control plane: prepare a database for the daemon (``cdc setup``) and remove it again
(``cdc teardown``).

Setup is two phases. :func:`plan_setup` only reads: it compares the databases with the config
and returns a :class:`SetupPlan`, a list of :class:`Step` s, each with a description and the
exact SQL it would run. :func:`apply_plan` runs those statements. ``cdc setup --dry-run`` prints
the plan and stops; running setup again plans nothing and says so.

The order matters: the activity store first (the sink), then the publication (it must exist
before the slot decodes the first change we want), REPLICA IDENTITY FULL (so updates and
deletes carry the whole old row), and the slot last.

Teardown drops the slot and the publication, never the activity store: the records are the
audit trail, and the checkpoint row says where they stop.

Identifiers are always composed with ``psycopg.sql``; table names come from the config.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.connect import connect, server_message
from cdc.control.failover import FAILOVER_SLOTS_SINCE
from cdc.dsn import connect_failure, describe_target
from cdc.errors import (
    CdcError,
    ConfigError,
    ConnectError,
    PrerequisiteError,
    SinkError,
    SlotError,
    SlotInUse,
)
from cdc.logical_messages import has_flush
from cdc.pipeline.catalog import primary_keys
from cdc.sqlfiles import sql_path, sql_template, sql_text
from cdc.store.indexes import values_search_indexes

log = logging.getLogger("cdc.provision")  # log lines keep the name they had

MIGRATIONS_DIR = "migrations"

# What the publication must publish; setup restores it if someone changed it.
PUBLISH = "insert, update, delete, truncate"

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


def check_wal_level(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SHOW wal_level").fetchone()
    level = row[0] if row else "unknown"
    if level != "logical":
        raise PrerequisiteError(
            f"wal_level is {level!r} on the source; set wal_level = logical in postgresql.conf "
            "(or ALTER SYSTEM SET wal_level = logical) and restart the server"
        )


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


def qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def _shown(names: list[str], limit: int = 4) -> str:
    extra = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {extra} more" if extra > 0 else "")


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


def relation_exists(conn: psycopg.Connection[Any], schema: str, name: str) -> bool:
    """Catalog lookup that needs no privilege on the schema (unlike ``to_regclass``)."""
    row = conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return row is not None


def applied_migrations(conn: psycopg.Connection[Any], schema: str) -> set[int]:
    """Versions recorded in ``<schema>.schema_migrations`` (empty when it does not exist)."""
    if not relation_exists(conn, schema, "schema_migrations"):
        return set()
    query = sql.SQL("SELECT version FROM {}.schema_migrations").format(sql.Identifier(schema))
    return {int(row[0]) for row in conn.execute(query)}


# -- planning -------------------------------------------------------------------------------


def _plan_store(sink: psycopg.Connection[Any], settings: Settings, plan: SetupPlan) -> None:
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
    for version, name in migration_files():
        if version in applied:
            plan.unchanged.append(f"migration {name} already applied")
            continue
        record = sql.SQL("INSERT INTO {}.schema_migrations (version, name) VALUES ({}, {})").format(
            ident, sql.Literal(version), sql.Literal(name)
        )
        plan.steps.append(
            Step(
                kind="store",
                target="sink",
                description=f"apply migration {name} to {settings.sink.table}",
                done=f"applied migration {name} to {settings.sink.table}",
                statements=(
                    sql_template(f"{MIGRATIONS_DIR}/{name}", **identifiers).as_string(sink),
                    record.as_string(sink),
                ),
                transaction=True,
            )
        )
    _plan_values_search(sink, settings, plan, applied)


# The migration that drops the index over the values (0012_search_summary.sql).
SEARCH_SUMMARY_MIGRATION = 12


def _plan_values_search(
    sink: psycopg.Connection[Any], settings: Settings, plan: SetupPlan, applied: set[int]
) -> None:
    """``[store] search_values``: full-text search over the row values needs its GIN index
    (created after the migrations, which drop it); without the setting it is dropped, since it
    costs most of the server's work of writing a record (docs/store.md)."""
    schema, table = settings.sink.schema_name, settings.sink.table_name
    existing = values_search_indexes(sink, schema, table)
    if SEARCH_SUMMARY_MIGRATION not in applied:
        existing = []  # the pending migration drops them
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
# generated columns (18) are never in the WAL, so never in the records.
GENERATED_COLUMNS_SINCE = 180000


def has_generated_columns_option(server_version: int) -> bool:
    return server_version >= GENERATED_COLUMNS_SINCE


def publication_options(server_version: int) -> sql.Composed:
    """The publication's WITH options on this server."""
    options = sql.SQL("publish = {}, publish_via_partition_root").format(sql.Literal(PUBLISH))
    if has_generated_columns_option(server_version):
        options += sql.SQL(", publish_generated_columns = stored")
    return options


def _plan_publication(source: psycopg.Connection[Any], settings: Settings, plan: SetupPlan) -> None:
    """The publication covers exactly the configured tables (added and removed as the config
    changes) and publishes every operation."""
    name = settings.source.publication
    wanted = {(r.schema_name, r.table_name) for r in settings.tables}
    column_lists = {(r.schema_name, r.table_name): r.columns for r in settings.tables}
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

    def published(schema: str, table: str) -> sql.Composable:
        columns = column_lists[(schema, table)]
        if not columns:
            return qualified(schema, table)
        return sql.SQL("{} ({})").format(
            qualified(schema, table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )

    table_list = sql.SQL(", ").join(published(s, t) for s, t in sorted(wanted))
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
    if current != wanted or columns_differ:
        added = sorted(f"{s}.{t}" for s, t in wanted - current)
        removed = sorted(f"{s}.{t}" for s, t in current - wanted)
        change = []
        if added:
            change.append(f"add {_shown(added)}")
        if removed:
            change.append(f"remove {_shown(removed)}")
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
    else:
        plan.unchanged.append(f"publication {name} covers exactly the {len(wanted)} table(s)")
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


def _plan_replica_identity(
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
    # Tables with a column list keep their primary-key identity (see _plan_publication).
    listed = {(r.schema_name, r.table_name) for r in settings.tables if r.columns}
    identities = {key: identity for key, (_oid, identity) in tables.items() if key not in listed}
    identities.update({(schema, table): identity for schema, table, identity in partitions})
    changed = sorted(key for key, identity in identities.items() if identity != "f")
    if not changed:
        plan.unchanged.append(f"all {len(tables)} table(s) have REPLICA IDENTITY FULL")
        return
    names = _shown([f"{schema}.{table}" for schema, table in changed])
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


def wants_failover_slot(settings: Settings, server_version: int) -> bool:
    """``[source] failover_slot``, by default on where the server has failover slots."""
    wanted = settings.source.failover_slot
    if wanted is None:
        return server_version >= FAILOVER_SLOTS_SINCE
    if wanted and server_version < FAILOVER_SLOTS_SINCE:
        raise ConfigError(
            f"[source] failover_slot = true needs PostgreSQL 17 or later (the source runs "
            f'{server_version // 10000}); remove it, and see docs/operations.md "Failover" '
            "for what a failover loses before 17"
        )
    return wanted


def _plan_slot(source: psycopg.Connection[Any], settings: Settings, plan: SetupPlan) -> None:
    slot = settings.source.slot
    failover = wants_failover_slot(settings, source.info.server_version)
    row = source.execute(
        "SELECT plugin, slot_type, database, (to_jsonb(s) ->> 'failover')::boolean "  # 17+
        "FROM pg_replication_slots s WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if row is None:
        kind = "pgoutput, failover" if failover else "pgoutput"
        statement = sql.SQL(
            "SELECT lsn::text FROM pg_create_logical_replication_slot({}, 'pgoutput'{})"
        ).format(sql.Literal(slot), sql.SQL(", failover => true" if failover else ""))
        plan.steps.append(
            Step(
                kind="slot",
                target="source",
                description=f"create logical replication slot {slot} ({kind})",
                done=f"created logical replication slot {slot} ({kind})",
                statements=(statement.as_string(source),),
            )
        )
        return
    plugin, slot_type, database, slot_failover = row
    if slot_type != "logical" or plugin != "pgoutput":
        raise PrerequisiteError(
            f'slot "{slot}" exists but is a {slot_type} slot with plugin {plugin!r}; choose '
            "another [source] slot name"
        )
    current_db = source.info.dbname
    if database != current_db:
        raise PrerequisiteError(
            f'slot "{slot}" belongs to database {database!r}, not {current_db!r}; '
            "choose another [source] slot name"
        )
    if slot_failover is not None and bool(slot_failover) != failover:
        # Only over a replication connection, and only while no daemon streams from it.
        statement = sql.SQL("ALTER_REPLICATION_SLOT {} (FAILOVER {})").format(
            sql.Identifier(slot), sql.SQL("true" if failover else "false")
        )
        change = "make" if failover else "stop making"
        plan.steps.append(
            Step(
                kind="slot",
                target="source",
                description=f"{change} slot {slot} a failover slot ([source] failover_slot)",
                done=f"slot {slot} is {'now' if failover else 'no longer'} a failover slot",
                statements=(statement.as_string(source),),
                replication=True,
            )
        )
        return
    plan.unchanged.append(f"slot {slot} exists" + (" (failover)" if slot_failover else ""))


def _plan(
    source: psycopg.Connection[Any], sink: psycopg.Connection[Any], settings: Settings
) -> SetupPlan:
    check_wal_level(source)
    table_oids(source, settings)  # unknown tables fail before anything is planned
    _check_privileges(source, sink, settings)
    plan = SetupPlan(
        source=describe_target(settings.source.dsn), sink=describe_target(settings.sink_dsn)
    )
    _plan_store(sink, settings, plan)
    _plan_publication(source, settings, plan)
    _plan_replica_identity(source, settings, plan)
    _plan_context(source, settings, plan)
    _plan_capture_modes(source, sink, settings, plan)
    _plan_slot(source, settings, plan)
    return plan


def _plan_capture_modes(
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
            + (f"shadow for {_shown(shadow)}, " if shadow else "")
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


CONTEXT_FUNCTIONS = (
    "set_context(jsonb)",
    "log(text, text, text, jsonb, text, text, text, text)",
    "log_now(text, text, text, jsonb, text, text, text, text)",
    "pre_request()",
)


def context_functions_sql(conn: psycopg.Connection[Any], schema: str) -> str:
    """sql/context_functions.sql for this server: log_now flushes its message on 17+."""
    flush = sql.SQL(", true" if has_flush(conn.info.server_version) else "")
    return (
        sql.SQL(sql_text("context_functions.sql"))
        .format(schema=sql.Identifier(schema), flush=flush)
        .as_string(conn)
    )


def _plan_emit_revoke(source: psycopg.Connection[Any], plan: SetupPlan) -> None:
    """Any role that may run pg_logical_emit_message can forge a context: PUBLIC loses it
    when the setup role is a superuser (the only role that may revoke it); otherwise
    ``cdc check`` keeps warning."""
    public = source.execute(sql_text("emit_message_public.sql")).fetchone()
    if not (public and public[0]):
        plan.unchanged.append("PUBLIC may not run pg_logical_emit_message")
        return
    superuser = source.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if not (superuser and superuser[0]):
        log.warning(
            "setup is not run as a superuser: PUBLIC keeps EXECUTE on pg_logical_emit_message, "
            "so any role can forge a transaction context; a superuser should run cdc setup"
        )
        return
    plan.steps.append(
        Step(
            kind="context",
            target="source",
            description="revoke EXECUTE on pg_logical_emit_message from PUBLIC (so that no role "
            "can forge a context)",
            done="revoked EXECUTE on pg_logical_emit_message from PUBLIC",
            statements=(sql_text("emit_message_revoke.sql"),),
        )
    )


def _plan_context(source: psycopg.Connection[Any], settings: Settings, plan: SetupPlan) -> None:
    """The functions the application side calls (transaction context, application events),
    in the source database, executable only by the roles in [context] allowed_roles."""
    schema = settings.sink.schema_name
    present = source.execute(
        "SELECT to_regprocedure(%s) IS NOT NULL",
        (f"{sql.Identifier(schema).as_string(source)}.set_context(jsonb)",),
    ).fetchone()
    if not (present and present[0]):
        plan.steps.append(
            Step(
                kind="context",
                target="source",
                description=f"create {schema}.set_context/log/log_now/pre_request in the source",
                done=f"created {schema}.set_context, log, log_now, pre_request in the source",
                statements=(context_functions_sql(source, schema),),
                transaction=True,
            )
        )
    _plan_emit_revoke(source, plan)
    wanted: list[tuple[str, tuple[str, ...]]] = [
        (role, CONTEXT_FUNCTIONS) for role in settings.context.allowed_roles
    ]
    wanted += [(role, ("pre_request()",)) for role in settings.context.request_roles]
    for role, signatures in wanted:
        if not source.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            raise ConfigError(f"[context]: role {role!r} does not exist in the source database")
        if present and present[0]:
            missing = [
                signature
                for signature in signatures
                if source.execute(
                    "SELECT has_function_privilege(%s, %s, 'EXECUTE')",
                    (role, f"{sql.Identifier(schema).as_string(source)}.{signature}"),
                ).fetchone()
                != (True,)
            ]
        else:
            missing = list(signatures)
        if not missing:
            continue
        grants = tuple(
            sql.SQL("GRANT EXECUTE ON FUNCTION {}.{} TO {}")
            .format(sql.Identifier(schema), sql.SQL(signature), sql.Identifier(role))
            .as_string(source)
            for signature in missing
        )
        names = ", ".join(signature.split("(")[0] for signature in missing)
        plan.steps.append(
            Step(
                kind="context",
                target="source",
                description=f"let {role} call {schema}.{{{names}}}",
                done=f"granted {role} EXECUTE on {schema}: {names}",
                statements=(
                    sql.SQL("GRANT USAGE ON SCHEMA {} TO {}")
                    .format(sql.Identifier(schema), sql.Identifier(role))
                    .as_string(source),
                    *grants,
                ),
            )
        )


# -- applying -------------------------------------------------------------------------------


def _apply(
    source: psycopg.Connection[Any],
    sink: psycopg.Connection[Any],
    plan: SetupPlan,
    settings: Settings,
) -> SetupReport:
    report = SetupReport(unchanged=list(plan.unchanged))
    for number, step in enumerate(plan.steps, 1):
        conn = source if step.target == "source" else sink
        captured = None
        try:
            if step.replication:
                _run_replication_commands(settings.source.dsn, step.statements)
            elif step.transaction:
                with conn.transaction():
                    for statement in step.statements:
                        conn.execute(statement)
            else:
                for statement in step.statements:
                    cur = conn.execute(statement)
                    if step.kind == "slot":
                        captured = cur.fetchone()
        except psycopg.Error as exc:
            raise _step_failure(number, len(plan.steps), step, exc) from None
        done = step.done
        if captured:
            # the slot's consistent point: changes committed after it are captured
            done += f"; changes are captured from {captured[0]}"
        report.did(done)
    return report


def _run_replication_commands(dsn: str, statements: tuple[str, ...]) -> None:
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=True,
            replication="database",
            connect_timeout=10,
            application_name="activity-cdc control",
        )
    except psycopg.OperationalError as exc:
        raise ConnectError(
            f"cannot open a replication connection to the source {describe_target(dsn)}: "
            f"{connect_failure(exc, dsn)}; setup's role needs REPLICATION (or SUPERUSER)"
        ) from None
    with conn:
        for statement in statements:
            conn.execute(statement)


def _step_failure(number: int, total: int, step: Step, exc: psycopg.Error) -> CdcError:
    message = server_message(exc)
    before = f"steps 1-{number - 1} of {total} were applied; " if number > 1 else ""
    text = (
        f'setup step {number} of {total} ("{step.description}") failed: {message}; '
        f'{before}fix it and run "cdc setup" again (it continues where it stopped)'
    )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return PrerequisiteError(
            text + "; setup must run as the owner of the tables (or a superuser); only the "
            'daemon runs with the least-privilege role ("cdc setup --print-role-sql")'
        )
    if step.target == "sink":
        return SinkError(text)
    return PrerequisiteError(text)


def plan_setup(settings: Settings) -> SetupPlan:
    """What setup would change, with the exact SQL; changes nothing."""
    with (
        connect(settings.source.dsn) as source,
        connect(settings.sink_dsn, role="sink") as sink,
        _needs_owner("setup", source),
    ):
        return _plan(source, sink, settings)


def _check_privileges(
    source: psycopg.Connection[Any], sink: psycopg.Connection[Any], settings: Settings
) -> None:
    """Every privilege setup needs and lacks, named before anything is planned (exit 5)."""
    tables = [qualified(r.schema_name, r.table_name).as_string(source) for r in settings.tables]
    missing = [
        row[0]
        for row in source.execute(
            sql_text("setup_privileges.sql"),
            {
                "tables": tables,
                "publication": settings.source.publication,
                "slot": settings.source.slot,
            },
        ).fetchall()
    ]
    missing += [
        f"{row[0]} on the sink" if settings.sink_dsn != settings.source.dsn else row[0]
        for row in sink.execute(
            sql_text("store_privileges.sql"), {"schema": settings.sink.schema_name}
        ).fetchall()
    ]
    if missing:
        user = source.info.user
        raise PrerequisiteError(
            f"cdc setup as role {user} lacks {'; '.join(missing)}; run cdc setup as the owner "
            "of the tables and of the activity store (or a superuser); a role made by "
            '"cdc setup --print-role-sql" is only for cdc run, check and lag'
        )


@contextlib.contextmanager
def _needs_owner(command: str, conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A privilege the connection's role lacks while planning → exit 5, naming the privilege
    and who runs the command (the daemon's least-privilege role cannot)."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        user = conn.info.user
        raise PrerequisiteError(
            f"cdc {command} as role {user}: {server_message(exc)}; "
            f"run cdc {command} as the owner of the tables and of the activity store (or a "
            f"superuser): {user} lacks that privilege, and a role made by "
            '"cdc setup --print-role-sql" is only for cdc run, check and lag'
        ) from None


def apply_plan(settings: Settings, plan: SetupPlan) -> SetupReport:
    """Run the statements of a plan from :func:`plan_setup`, step by step."""
    with (
        connect(settings.source.dsn) as source,
        connect(settings.sink_dsn, role="sink") as sink,
    ):
        return _apply(source, sink, plan, settings)


def setup(settings: Settings) -> SetupReport:
    """Everything the daemon needs; idempotent (plan, then apply on the same connections)."""
    with (
        connect(settings.source.dsn) as source,
        connect(settings.sink_dsn, role="sink") as sink,
    ):
        with _needs_owner("setup", source):
            plan = _plan(source, sink, settings)
        return _apply(source, sink, plan, settings)


def setup_store(settings: Settings, dsn: str) -> SetupReport:
    """Only the activity store, on ``dsn`` (``cdc ingest --to DSN``): the migrations that
    ``setup`` applies to the sink, idempotent. Several ingest processes starting at once take
    turns (a session advisory lock), so each plans after the one before has applied."""
    with connect(dsn, role="sink") as store:
        store.execute("SELECT pg_advisory_lock(hashtext('activity-cdc store setup'))")
        plan = SetupPlan(source="", sink=describe_target(dsn))
        _plan_store(store, settings, plan)
        return _apply(store, store, plan, settings)


# -- teardown -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeardownPlan:
    source: str
    slot: str | None  # the slot, if it exists
    publication: str | None  # the publication, if it exists
    last_commit_lsn: str | None  # the last recorded source commit (where the records stop)
    last_commit_time: datetime | None

    @property
    def empty(self) -> bool:
        return self.slot is None and self.publication is None

    def describe(self) -> list[str]:
        lines = []
        if self.slot:
            lines.append(f"drop replication slot {self.slot}")
        if self.publication:
            lines.append(f"drop publication {self.publication}")
        return lines


def plan_teardown(settings: Settings) -> TeardownPlan:
    """What teardown would drop. Raises SlotInUse when a process streams from the slot."""
    slot_name, publication = settings.source.slot, settings.source.publication
    with connect(settings.source.dsn) as source:
        slot = source.execute(
            "SELECT active_pid, slot_type, plugin, database FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot_name,),
        ).fetchone()
        publication_row = source.execute(
            "SELECT pg_has_role(pubowner, 'USAGE') FROM pg_publication WHERE pubname = %s",
            (publication,),
        ).fetchone()
        has_publication = publication_row is not None
        current_db = source.info.dbname
        user = source.info.user
    if publication_row is not None and not publication_row[0]:
        # checked before the slot is dropped, so that teardown never stops half way
        raise PrerequisiteError(
            f"cdc teardown as role {user}: must be owner of publication {publication}; run "
            "cdc teardown as the role that ran cdc setup (the owner of the tables, or a superuser)"
        )
    if slot is not None:
        pid, slot_type, plugin, database = slot
        if slot_type != "logical" or plugin != "pgoutput" or database != current_db:
            raise SlotError(
                f'slot "{slot_name}" is a {slot_type} slot ({plugin or "no plugin"}) of database '
                f"{database!r}, not activity-cdc's slot in {current_db!r}; not dropping it"
            )
        if pid is not None:
            raise SlotInUse(
                f'replication slot "{slot_name}" is in use by pid {pid}; stop the daemon '
                f"(or SELECT pg_terminate_backend({pid})) and run teardown again"
            )
    commit_lsn, commit_time = _last_checkpoint(settings)
    return TeardownPlan(
        source=describe_target(settings.source.dsn),
        slot=slot_name if slot is not None else None,
        publication=publication if has_publication else None,
        last_commit_lsn=commit_lsn,
        last_commit_time=commit_time,
    )


def _last_checkpoint(settings: Settings) -> tuple[str | None, datetime | None]:
    schema = settings.sink.schema_name
    try:
        with connect(settings.sink_dsn, role="sink") as sink:
            if not relation_exists(sink, schema, "checkpoints"):
                return None, None
            row = sink.execute(
                sql.SQL(
                    "SELECT commit_lsn::text, commit_time FROM {}.checkpoints WHERE slot_name = %s"
                ).format(sql.Identifier(schema)),
                (settings.source.slot,),
            ).fetchone()
    except (ConnectError, psycopg.Error) as exc:
        log.warning("teardown: cannot read the checkpoint: %s", exc)
        return None, None
    return (row[0], row[1]) if row else (None, None)


def teardown(settings: Settings, plan: TeardownPlan) -> list[str]:
    """Drop the slot and the publication of ``plan``; never the activity store."""
    done = []
    with connect(settings.source.dsn) as source:
        if plan.slot:
            try:
                source.execute("SELECT pg_drop_replication_slot(%s)", (plan.slot,))
            except psycopg.errors.ObjectInUse as exc:
                raise SlotInUse(
                    f"{exc.diag.message_primary}; stop the daemon and run teardown again"
                ) from None
            except psycopg.errors.UndefinedObject:
                pass  # dropped meanwhile: the goal is reached
            done.append(f"dropped replication slot {plan.slot}")
        if plan.publication:
            source.execute(
                sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(plan.publication))
            )
            done.append(f"dropped publication {plan.publication}")
    for line in done:
        log.info("teardown: %s", line)
    return done
