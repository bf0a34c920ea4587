"""Setup's two phases on the databases: plan (read only: compare the databases with the config)
and apply (run the plan's statements, step by step), in the order the plans must run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

from cdc.config import Settings
from cdc.connect import connect, server_message
from cdc.control.setup.context import plan_context
from cdc.control.setup.identity import plan_replica_identity, table_oids
from cdc.control.setup.plan import SetupPlan, SetupReport, Step, qualified
from cdc.control.setup.publication import plan_publication
from cdc.control.setup.slot import plan_slot
from cdc.control.setup.store import plan_capture_modes, plan_store
from cdc.dsn import connect_failure, describe_target
from cdc.errors import CdcError, ConnectError, PrerequisiteError, SinkError
from cdc.sqlfiles import sql_text


def check_wal_level(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SHOW wal_level").fetchone()
    level = row[0] if row else "unknown"
    if level != "logical":
        raise PrerequisiteError(
            f"wal_level is {level!r} on the source; set wal_level = logical in postgresql.conf "
            "(or ALTER SYSTEM SET wal_level = logical) and restart the server"
        )


def _plan(
    source: psycopg.Connection[Any], sink: psycopg.Connection[Any], settings: Settings
) -> SetupPlan:
    check_wal_level(source)
    table_oids(source, settings)  # unknown tables fail before anything is planned
    _check_privileges(source, sink, settings)
    plan = SetupPlan(
        source=describe_target(settings.source.dsn), sink=describe_target(settings.sink_dsn)
    )
    plan_store(sink, settings, plan)
    plan_publication(source, settings, plan)
    plan_replica_identity(source, settings, plan)
    plan_context(source, settings, plan)
    plan_capture_modes(source, sink, settings, plan)
    plan_slot(source, settings, plan)
    return plan


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
        plan_store(store, settings, plan)
        return _apply(store, store, plan, settings)
