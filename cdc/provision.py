"""Control plane: prepare a database for the daemon (``cdc setup``).

Each step checks before it changes, so running setup again changes nothing and says so. The
order matters: the activity store first (the sink), then the publication (it must exist
before the slot decodes the first change we want), REPLICA IDENTITY FULL (so updates and
deletes carry the whole old row), and the slot last.

Identifiers are always composed with ``psycopg.sql``; table names come from the config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.dsn import describe_target
from cdc.errors import ConfigError, ConnectError, PrerequisiteError
from cdc.sqlfiles import sql_path, sql_template, sql_text

log = logging.getLogger(__name__)

MIGRATIONS_DIR = "migrations"


@dataclass
class SetupReport:
    actions: list[str] = field(default_factory=list)  # what was changed
    unchanged: list[str] = field(default_factory=list)  # what was already in place

    def did(self, text: str) -> None:
        log.debug("setup: %s", text)
        self.actions.append(text)

    def kept(self, text: str) -> None:
        self.unchanged.append(text)


def connect(dsn: str, *, role: str = "source", autocommit: bool = True) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            dsn, autocommit=autocommit, connect_timeout=10, application_name="activity-cdc control"
        )
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or ["connection failed"])[0]
        raise ConnectError(
            f"cannot connect to the {role} database {describe_target(dsn)}: {first}; "
            f"check [{role}] dsn or CDC_{role.upper()}_DSN"
        ) from None


def check_wal_level(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SHOW wal_level").fetchone()
    level = row[0] if row else "unknown"
    if level != "logical":
        raise PrerequisiteError(
            f"wal_level is {level!r} on the source; set wal_level = logical in postgresql.conf "
            "(or ALTER SYSTEM SET wal_level = logical) and restart the server"
        )


def primary_keys(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], tuple[str, ...]]:
    rows = conn.execute(sql_text("primary_keys.sql")).fetchall()
    return {(schema, table): tuple(columns) for schema, table, columns in rows}


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


def _qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def migration_files() -> list[tuple[int, str]]:
    files = sorted(sql_path(MIGRATIONS_DIR).glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return [(int(path.name[:4]), path.name) for path in files]


def apply_migrations(
    conn: psycopg.Connection[Any], settings: Settings, report: SetupReport
) -> None:
    """Create/upgrade the activity store; each migration runs once, in its own transaction."""
    schema, table = settings.sink.schema_name, settings.sink.table_name
    identifiers = {
        "schema": schema,
        "records": table,
        "checkpoints": "checkpoints",
        "records_pkey": f"{table}_pkey",
        "records_occurred_at_idx": f"{table}_occurred_at_idx",
        "records_entity_idx": f"{table}_entity_idx",
    }
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(sql.Identifier(schema))
        )
    applied = {
        row[0]
        for row in conn.execute(
            sql.SQL("SELECT version FROM {}.schema_migrations").format(sql.Identifier(schema))
        )
    }
    for version, name in migration_files():
        if version in applied:
            report.kept(f"migration {name} already applied")
            continue
        with conn.transaction():
            conn.execute(sql_template(f"{MIGRATIONS_DIR}/{name}", **identifiers))
            conn.execute(
                sql.SQL("INSERT INTO {}.schema_migrations (version, name) VALUES (%s, %s)").format(
                    sql.Identifier(schema)
                ),
                (version, name),
            )
        report.did(f"applied migration {name} to {schema}.{table}")


def ensure_publication(
    conn: psycopg.Connection[Any], settings: Settings, report: SetupReport
) -> None:
    name = settings.source.publication
    wanted = {(r.schema_name, r.table_name) for r in settings.tables}
    table_list = sql.SQL(", ").join(_qualified(s, t) for s, t in sorted(wanted))
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone()
    if not exists:
        conn.execute(
            sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(name), table_list)
        )
        report.did(f"created publication {name} for {len(wanted)} tables")
        return
    current = {
        (schema, table)
        for schema, table in conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (name,)
        )
    }
    if current != wanted:
        conn.execute(
            sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(sql.Identifier(name), table_list)
        )
        added, removed = wanted - current, current - wanted
        report.did(f"publication {name}: added {len(added)} table(s), removed {len(removed)}")
    else:
        report.kept(f"publication {name} already covers the {len(wanted)} tables")


def ensure_replica_identity(
    conn: psycopg.Connection[Any], settings: Settings, report: SetupReport
) -> None:
    """REPLICA IDENTITY FULL, so updates and deletes carry the whole old row (the diff and the
    value of unchanged TOASTed columns come from it)."""
    tables = table_oids(conn, settings)
    changed = []
    for (schema, table), (_oid, identity) in sorted(tables.items()):
        if identity != "f":
            conn.execute(
                sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(_qualified(schema, table))
            )
            changed.append(f"{schema}.{table}")
    if changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        report.did(f"set REPLICA IDENTITY FULL on {len(changed)} table(s): {shown}")
    else:
        report.kept(f"all {len(tables)} tables already have REPLICA IDENTITY FULL")


def ensure_slot(conn: psycopg.Connection[Any], settings: Settings, report: SetupReport) -> None:
    slot = settings.source.slot
    row = conn.execute(
        "SELECT plugin, slot_type, database FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if row is None:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        report.did(f"created logical replication slot {slot} (pgoutput)")
        return
    plugin, slot_type, database = row
    if slot_type != "logical" or plugin != "pgoutput":
        raise PrerequisiteError(
            f'slot "{slot}" exists but is a {slot_type} slot with plugin {plugin!r}; choose '
            "another [source] slot name"
        )
    current_db = conn.info.dbname
    if database != current_db:
        raise PrerequisiteError(
            f'slot "{slot}" belongs to database {database!r}, not {current_db!r}; '
            "choose another [source] slot name"
        )
    report.kept(f"slot {slot} already exists")


def setup(settings: Settings) -> SetupReport:
    """Everything the daemon needs; idempotent."""
    report = SetupReport()
    with connect(settings.source.dsn) as source:
        check_wal_level(source)
        table_oids(source, settings)  # unknown tables fail before anything changes
        with connect(settings.sink_dsn, role="sink") as sink:
            apply_migrations(sink, settings, report)
        ensure_publication(source, settings, report)
        ensure_replica_identity(source, settings, report)
        ensure_slot(source, settings, report)
    return report
