"""``cdc check`` on the sink: the activity store, its migrations, the dead letters and the
privileges the daemon's role needs there."""

from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.control.check_report import SERVER, STORE, CheckReport
from cdc.control.roles import sink_privileges
from cdc.control.setup import (
    applied_migrations,
    migration_files,
    relation_exists,
)
from cdc.dsn import describe_target


def check_sink(conn: psycopg.Connection[Any], settings: Settings, report: CheckReport) -> None:
    schema, table = settings.sink.schema_name, settings.sink.table_name
    missing = [
        f"{schema}.{name}"
        for name in (table, "checkpoints", "schema_migrations")
        if not relation_exists(conn, schema, name)
    ]
    if missing:
        report.fail(
            "activity store",
            f"{', '.join(missing)} missing in {describe_target(settings.sink_dsn)}; run cdc setup",
            STORE,
        )
        return
    try:
        applied = applied_migrations(conn, schema)
    except psycopg.errors.InsufficientPrivilege:
        report.warn(
            "activity store",
            f"cannot read {schema}.schema_migrations as {conn.info.user} (the daemon does not "
            "need to); run cdc check as the setup role to verify the migrations",
        )
    else:
        pending = [name for version, name in migration_files() if version not in applied]
        if pending:
            report.fail(
                "activity store",
                f"migration(s) {', '.join(pending)} not applied; run cdc setup",
                STORE,
            )
        else:
            report.ok(
                "activity store",
                f"activity store {settings.sink.table}: {len(applied)} migration(s), current",
            )
    _check_sink_privileges(conn, settings, report)
    _check_dead_letters(conn, schema, report)


def _check_dead_letters(conn: psycopg.Connection[Any], schema: str, report: CheckReport) -> None:
    """Parked changes are not in the records: say so while any is left."""
    if not relation_exists(conn, schema, "dead_letters"):
        return
    try:
        row = conn.execute(
            sql.SQL(
                "SELECT count(*), min(parked_at), min(commit_lsn)::text FROM {}.dead_letters"
            ).format(sql.Identifier(schema))
        ).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        conn.rollback()
        return
    if row is None or not row[0]:
        return
    report.warn(
        "dead letters",
        f"{row[0]} change(s) the sink refused are parked in {schema}.dead_letters (first parked "
        f"{row[1]:%Y-%m-%d %H:%M:%S %Z}, from commit {row[2]}): they are NOT in the activity "
        'records; fix each and move it (docs/operations.md "Dead letters")',
    )


def _check_sink_privileges(
    conn: psycopg.Connection[Any], settings: Settings, report: CheckReport
) -> None:
    """What the daemon's sink session needs (cdc.control.roles.sink_privileges)."""
    schema = settings.sink.schema_name
    row = conn.execute(
        "SELECT has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = %s",
        (schema,),
    ).fetchone()
    missing = [] if row and row[0] else [f"USAGE on schema {schema}"]
    for table_schema, table, privileges in sink_privileges(settings):
        for privilege in privileges:
            row = conn.execute(
                "SELECT has_table_privilege(c.oid, %s) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                (privilege, table_schema, table),
            ).fetchone()
            if not (row and row[0]):
                missing.append(f"{privilege} on {table_schema}.{table}")
    user = conn.info.user
    if missing:
        report.fail(
            "sink privileges",
            f"{user} lacks {', '.join(missing)}; grant them (cdc setup --print-role-sql)",
            SERVER,
        )
    else:
        report.ok("sink privileges", f"{user} may write records, checkpoints and rollups")
