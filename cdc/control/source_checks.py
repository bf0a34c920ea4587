"""``cdc check`` on the source: the server's settings, the role, the configured tables and
their replica identity, the publication, the context functions, the slot, failover."""

from typing import Any

import psycopg

from cdc.config import Settings
from cdc.control.check_report import CONFIG, SERVER, SETUP, CheckReport, shown
from cdc.control.failover import failover_findings
from cdc.control.local_socket import local_socket_host
from cdc.control.roles import source_functions
from cdc.control.setup import (
    CONTEXT_FUNCTIONS,
    PUBLISH,
    has_generated_columns_option,
    wants_failover_slot,
)
from cdc.dsn import describe_target
from cdc.errors import ConfigError
from cdc.logical_messages import grant_hint, text_signature
from cdc.sqlfiles import sql_text


def _setting(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
    return str(row[0]) if row else ""


def check_source(conn: psycopg.Connection[Any], settings: Settings, report: CheckReport) -> None:
    row = conn.execute(
        "SELECT current_user, split_part(current_setting('server_version'), ' ', 1)"
    ).fetchone()
    assert row is not None
    user, version = row
    report.ok(
        "source",
        f"source {describe_target(settings.source.dsn)} as {user} (PostgreSQL {version})",
    )
    socket_host = local_socket_host(conn, settings.source.dsn)
    if socket_host is not None:
        report.warn(
            "local socket",
            f"the source is reached over TCP on this host, and its local socket admits the "
            f"same role: host={socket_host} in [source] dsn (or CDC_SOURCE_DSN) spares the "
            "walsender the TCP stack for every message it sends (docs/operations.md, "
            '"Where the daemon runs")',
        )
    _check_server_settings(conn, settings, report)
    _check_role(conn, user, report)
    _check_functions(conn, settings, user, report)
    identities = _check_tables(conn, settings, report)
    _check_replica_identity(identities, report)
    _check_publication(conn, settings, report)
    _check_context(conn, settings, report)
    _check_slot(conn, settings, report)
    _check_failover(conn, settings, report)


def _check_server_settings(
    conn: psycopg.Connection[Any], settings: Settings, report: CheckReport
) -> None:
    wal_level = _setting(conn, "wal_level")
    if wal_level == "logical":
        report.ok("wal_level", "wal_level = logical")
    else:
        report.fail(
            "wal_level",
            f"{wal_level}, need logical; ALTER SYSTEM SET wal_level = logical and restart the "
            "server",
            SERVER,
        )

    slot = settings.source.slot
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE slot_name = %s), "
        "count(*) FILTER (WHERE slot_name = %s AND active) FROM pg_replication_slots",
        (slot, slot),
    ).fetchone()
    assert row is not None
    slots_used, have_slot, slot_active = int(row[0]), bool(row[1]), bool(row[2])
    max_slots = int(_setting(conn, "max_replication_slots"))
    if have_slot or slots_used < max_slots:
        report.ok(
            "max_replication_slots",
            f"max_replication_slots = {max_slots} ({slots_used} in use)",
        )
    else:
        report.fail(
            "max_replication_slots",
            f"{slots_used} of {max_slots} in use and slot {slot} does not exist yet; raise "
            "max_replication_slots (restart) or drop an unused slot",
            SERVER,
        )

    row = conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()
    senders_used = int(row[0]) if row else 0
    max_senders = int(_setting(conn, "max_wal_senders"))
    free = max(max_senders - senders_used, 0)
    needed = 0 if slot_active else 1  # an active slot already has its walsender
    if free >= needed:
        report.ok(
            "max_wal_senders",
            f"max_wal_senders = {max_senders} ({free} free)",
        )
    else:
        report.fail(
            "max_wal_senders",
            f"{free} free of {max_senders}; raise max_wal_senders (restart)",
            SERVER,
        )

    keep = _setting(conn, "max_slot_wal_keep_size")
    if keep == "-1":
        report.warn(
            "max_slot_wal_keep_size",
            "-1 (unlimited): a stopped daemon makes the slot keep WAL until the disk fills; "
            "set a limit (ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT "
            "pg_reload_conf()) and alert on cdc lag --max-bytes",
        )
    else:
        report.ok("max_slot_wal_keep_size", f"max_slot_wal_keep_size = {keep}")


def _check_role(conn: psycopg.Connection[Any], user: str, report: CheckReport) -> None:
    row = conn.execute(
        "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    superuser, replication = (bool(row[0]), bool(row[1])) if row else (False, False)
    if superuser:
        report.ok(
            "role",
            f"role {user} is a superuser (a least-privilege role is better: "
            "cdc setup --print-role-sql)",
        )
    elif replication:
        report.ok("role", f"role {user} has REPLICATION")
    else:
        report.fail(
            "role",
            f"{user} has neither REPLICATION nor SUPERUSER; ALTER ROLE {user} REPLICATION "
            "(or use the role of cdc setup --print-role-sql)",
            SERVER,
        )


def _check_tables(
    conn: psycopg.Connection[Any], settings: Settings, report: CheckReport
) -> dict[str, tuple[str, bool]]:
    """Each configured table exists; returns name -> (replica identity, has primary key)."""
    rows = conn.execute(
        "SELECT w.name, c.relreplident::text, "
        "       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) "
        "  FROM unnest(%s::text[], %s::text[], %s::text[]) AS w(name, s, t) "
        "  JOIN pg_namespace n ON n.nspname = w.s "
        "  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.t "
        "   AND c.relkind IN ('r', 'p')",
        (
            [r.name for r in settings.tables],
            [r.schema_name for r in settings.tables],
            [r.table_name for r in settings.tables],
        ),
    ).fetchall()
    found = {str(name): (str(identity), bool(pk)) for name, identity, pk in rows}
    missing = [r.name for r in settings.tables if r.name not in found]
    if missing:
        report.fail(
            "tables",
            f"{shown(missing)} do(es) not exist in the source database; create them or "
            "remove them from [[tables]]",
            CONFIG,
        )
    else:
        report.ok("tables", f"the {len(found)} configured table(s) exist")
    return found


def _check_replica_identity(identities: dict[str, tuple[str, bool]], report: CheckReport) -> None:
    problems = []
    for name, (identity, has_pk) in sorted(identities.items()):
        if identity == "f":
            continue
        if identity == "n" or (identity == "d" and not has_pk):
            problems.append(
                f"{name} has none (the application's UPDATE and DELETE fail once it is published)"
            )
        elif identity == "i":
            problems.append(f"{name} is USING INDEX (old rows carry only the key)")
        else:
            problems.append(f"{name} is DEFAULT (updates carry no old row, so no diff)")
    if problems:
        report.fail(
            "replica identity",
            "; ".join(problems[:4])
            + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
            + "; FULL expected: run cdc setup",
            SETUP,
        )
    elif identities:
        report.ok("replica identity", f"replica identity FULL on the {len(identities)} table(s)")


def _check_publication(
    conn: psycopg.Connection[Any], settings: Settings, report: CheckReport
) -> None:
    name = settings.source.publication
    row = conn.execute(
        "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate, "
        "       to_jsonb(p) ->> 'pubgencols' "  # 18 and later
        "FROM pg_publication p WHERE pubname = %s",
        (name,),
    ).fetchone()
    if row is None:
        report.fail("publication", f"{name} does not exist; run cdc setup", SETUP)
        return
    if row[0]:
        report.fail(
            "publication",
            f"{name} is FOR ALL TABLES; drop it (cdc teardown) and run cdc setup",
            SETUP,
        )
        return
    published = {
        f"{schema}.{table}"
        for schema, table in conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (name,)
        )
    }
    wanted = {f"{r.schema_name}.{r.table_name}" for r in settings.tables}
    missing = sorted(wanted - published)
    operations = [op for op, on in zip(PUBLISH.split(", "), row[1:5], strict=True) if not on]
    if missing or operations:
        problems = []
        if missing:
            problems.append(f"does not publish {shown(missing)}")
        if operations:
            problems.append(f"does not publish {', '.join(operations)} operations")
        report.fail("publication", f"{name} " + " and ".join(problems) + "; run cdc setup", SETUP)
        return
    if has_generated_columns_option(conn.info.server_version) and row[5] != "s":
        report.warn(
            "publication",
            f"{name} does not publish stored generated columns (records lack them where "
            "to_jsonb shows them); run cdc setup",
        )
        return
    extra = sorted(published - wanted)
    if extra:
        report.warn(
            "publication",
            f"{name} also publishes {shown(extra)}, which is not configured (its changes are "
            "decoded and dropped); run cdc setup to remove it",
        )
    else:
        report.ok("publication", f"publication {name} publishes exactly the {len(wanted)} table(s)")


def _check_context(conn: psycopg.Connection[Any], settings: Settings, report: CheckReport) -> None:
    """What setup creates in the source besides the publication and the slot: the context
    functions, EXECUTE on them for the configured roles, and (as a superuser) no EXECUTE on
    pg_logical_emit_message for PUBLIC."""
    schema = settings.sink.schema_name
    # By catalog, not to_regprocedure: the daemon's role has no USAGE on the schema.
    present = {
        str(signature): int(oid)
        for signature, oid in conn.execute(sql_text("functions_of_schema.sql"), (schema,))
    }
    missing = [signature for signature in CONTEXT_FUNCTIONS if signature not in present]
    if missing:
        names = ", ".join(f"{schema}.{signature.split('(')[0]}" for signature in missing)
        report.fail("context functions", f"{names} missing in the source; run cdc setup", SETUP)
        return
    wanted: list[tuple[str, tuple[str, ...]]] = [
        (role, CONTEXT_FUNCTIONS) for role in settings.context.allowed_roles
    ]
    wanted += [(role, ("pre_request()",)) for role in settings.context.request_roles]
    ungranted = []
    for role, signatures in wanted:
        for signature in signatures:
            row = conn.execute(
                "SELECT CASE WHEN r.oid IS NULL THEN NULL "
                "ELSE has_function_privilege(r.oid, %s::oid, 'EXECUTE') END "
                "FROM (SELECT 1) AS one LEFT JOIN pg_roles r ON r.rolname = %s",
                (present[signature], role),
            ).fetchone()
            if row is None or row[0] is None:
                report.fail(
                    "context functions",
                    f"[context] role {role} does not exist in the source database; create it "
                    "or remove it from the config",
                    CONFIG,
                )
                return
            if not row[0]:
                ungranted.append(f"{role} on {schema}.{signature.split('(')[0]}")
    if ungranted:
        report.fail(
            "context functions",
            f"EXECUTE missing for {shown(ungranted)}; run cdc setup (it grants [context] "
            "allowed_roles and request_roles)",
            SETUP,
        )
        return
    report.ok(
        "context functions",
        f"context functions {schema}.set_context, log, log_now, pre_request exist"
        + (f", granted to {len({role for role, _ in wanted})} role(s)" if wanted else ""),
    )
    row = conn.execute(sql_text("emit_message_public.sql")).fetchone()
    if row and row[0]:
        report.warn(
            "pg_logical_emit_message",
            "PUBLIC may EXECUTE it, so any role can forge a transaction context or an "
            "application event; run cdc setup as a superuser (it revokes it from PUBLIC)",
        )


def _check_slot(conn: psycopg.Connection[Any], settings: Settings, report: CheckReport) -> None:
    slot = settings.source.slot
    row = conn.execute(
        "SELECT slot_type, plugin, database, wal_status, active_pid, "
        "       confirmed_flush_lsn::text "
        "  FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if row is None:
        report.fail("slot", f"{slot} does not exist; run cdc setup", SETUP)
        return
    slot_type, plugin, database, wal_status, pid, confirmed = row
    if slot_type != "logical" or plugin != "pgoutput":
        report.fail(
            "slot",
            f"{slot} is a {slot_type} slot with plugin {plugin or 'none'}, not a logical "
            "pgoutput slot; choose another [source] slot name",
            SETUP,
        )
        return
    if database != conn.info.dbname:
        report.fail(
            "slot",
            f"{slot} belongs to database {database}, not {conn.info.dbname}; choose another "
            "[source] slot name",
            SETUP,
        )
        return
    if wal_status == "lost":
        report.fail(
            "slot",
            f"{slot} is invalidated (wal_status lost): the server removed WAL it needed, so "
            f"changes after {confirmed or 'its last confirmed position'} were lost; see "
            'docs/operations.md "An invalidated slot": cdc teardown, cdc setup, then re-baseline '
            "each table with cdc backfill --table TABLE and reconcile the gap",
            SETUP,
        )
        return
    state = f"active (pid {pid})" if pid is not None else "inactive"
    if wal_status == "unreserved":
        report.warn(
            "slot",
            f"{slot} retains more WAL than max_slot_wal_keep_size allows (wal_status "
            "unreserved): it is invalidated at the next checkpoint unless the daemon catches up",
        )
    else:
        report.ok("slot", f"slot {slot}: logical pgoutput, wal_status {wal_status}, {state}")


def _check_functions(
    conn: psycopg.Connection[Any], settings: Settings, user: str, report: CheckReport
) -> None:
    """What the heartbeat calls (cdc.control.roles.source_functions), as the heartbeat's role."""
    functions = source_functions(settings)
    if not functions:
        return
    # pg_logical_emit_message's text variant, found by name (its signature depends on the
    # server version: cdc.logical_messages)
    row = conn.execute(sql_text("emit_message_privilege.sql")).fetchone()
    if not (row and row[0]):
        report.fail(
            "heartbeat",
            f"{user} may not execute {text_signature(conn.info.server_version)}, which "
            f"heartbeats call every {settings.daemon.heartbeat_interval_s:g}s; "
            f"{grant_hint(conn.info.server_version, user)} (cdc setup --print-role-sql), or set "
            "[daemon] heartbeat_interval_s = 0",
            SERVER,
        )
    else:
        report.ok(
            "heartbeat",
            f"heartbeat every {settings.daemon.heartbeat_interval_s:g}s: {user} may execute "
            "pg_logical_emit_message",
        )


def _check_failover(conn: psycopg.Connection[Any], settings: Settings, report: CheckReport) -> None:
    """Whether the slot survives a failover of the source (cdc.control.failover)."""
    try:
        wanted = wants_failover_slot(settings, conn.info.server_version)
    except ConfigError as exc:
        report.fail("failover", str(exc), CONFIG)
        return
    for finding in failover_findings(conn, settings.source.dsn, settings.source.slot, wanted):
        if finding.status == "ok":
            report.ok(finding.name, finding.message)
        else:
            report.warn(finding.name, finding.message)
