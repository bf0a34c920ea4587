"""Moving tables from audit triggers to CDC: ``cdc triggers list|backup|cutover|rollback|drop|
status`` and ``cdc verify``. Thin: options in, one call of ``cdc.cutover.triggers`` /
``cdc.cutover.migration``
/ ``cdc.cutover.verify``, text or JSON out. docs/migration.md walks through them in order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from cdc.cli.main import State, handles_errors, main, pass_state
from cdc.config import Settings
from cdc.errors import VerifyFailed

TABLE_HELP = "A configured table (schema.table, or its name when unique); repeat for more."


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """ISO 8601 (UTC without an offset) or a duration ago: 90s, 15m, 2h, 7d."""
    if value is None:
        return None
    from cdc.store import parse_moment

    try:
        return parse_moment(value, datetime.now(UTC))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _tables(
    settings: Settings, names: Sequence[str], phase: int | None, *, required: bool
) -> list[tuple[str, str]]:
    from cdc.cutover.triggers import resolve_tables

    if required and not names and phase is None:
        raise click.UsageError("say which tables: --table T (repeatable) or --phase N")
    return resolve_tables(settings, names, phase)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


@main.group()
def triggers() -> None:
    """The audit triggers of the captured tables, and the move from them to CDC.

    \b
    In order (docs/migration.md):
      cdc triggers list                      which triggers are audit triggers
      cdc triggers backup --out FILE         save them (and their functions)
      cdc verify                             shadow mode: records == legacy audit rows?
      cdc triggers cutover --phase 1         switch tables to CDC at an exact point
      cdc triggers rollback --table T        and back, the same way
      cdc triggers drop --dry-run            after the soak: remove them
      cdc triggers status                    where each table is
    """


@triggers.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array instead of text.")
@click.option("--audit-only", is_flag=True, help="Only the audit triggers.")
@pass_state
@handles_errors
def list_command(state: State, as_json: bool, audit_only: bool) -> None:
    """Every trigger on the configured tables, and whether it is an audit trigger ([migration]
    audit_functions). Non-audit triggers (updated_at, business rules) are never touched."""
    from cdc.connect import connect
    from cdc.cutover.triggers import list_triggers

    with connect(state.settings.source.dsn) as conn:
        found = [t for t in list_triggers(conn, state.settings) if t.audit or not audit_only]
    if as_json:
        _echo_json([t.as_json() for t in found])
        return
    if not found:
        click.echo("no triggers on the configured tables")
        return
    rows = [["TABLE", "TRIGGER", "TIMING", "EVENTS", "LEVEL", "STATE", "FUNCTION", "AUDIT"]]
    rows += [
        [
            t.qualified_table,
            t.name,
            t.timing,
            " OR ".join(t.events),
            t.level,
            t.enabled_state,
            t.function.signature,
            "audit" if t.audit else "-",
        ]
        for t in found
    ]
    for line in _columns(rows):
        click.echo(line)
    audit = [t for t in found if t.audit]
    click.echo(
        f"{len(found)} trigger(s), {len(audit)} audit trigger(s) on "
        f"{len({t.table_name for t in audit})} table(s), "
        f"{sum(t.is_enabled for t in audit)} of them enabled"
    )


@triggers.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Also write the SQL to this file ('-': standard output).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@pass_state
@handles_errors
def backup(state: State, out: str | None, as_json: bool) -> None:
    """Back up every audit trigger and its function (definition, enabled state, owner,
    SECURITY DEFINER, settings, comments): a SQL file that recreates them, and a copy with
    its SHA-256 in <activity schema>.trigger_backups, read back and verified."""
    from cdc.connect import connect
    from cdc.cutover.migration.backup import take_backup

    settings = state.settings
    taken = take_backup(settings)
    with connect(settings.source.dsn) as conn:
        database = conn.info.dbname
    script = taken.script(database)
    if out == "-":
        click.echo(script, nl=False)
    elif out:
        Path(out).write_text(script, encoding="utf-8")
    summary = {
        "backup_id": taken.id,
        "taken_at": taken.taken_at.isoformat(),
        "checksum": taken.checksum,
        "triggers": len(taken.triggers),
        "tables": len(taken.tables()),
        "functions": len({t.function.signature for t in taken.triggers}),
        "verified": taken.verified_at is not None,
        "file": out if out and out != "-" else None,
        "stored_in": f"{settings.sink.schema_name}.trigger_backups",
    }
    if as_json:
        _echo_json(summary)
        return
    where = f"; written to {out}" if out and out != "-" else ""
    click.echo(
        f"backup {taken.id}: {summary['triggers']} audit trigger(s) on {summary['tables']} "
        f"table(s), {summary['functions']} function(s); sha256 {taken.checksum}; verified; "
        f"stored in {summary['stored_in']}{where}",
        err=out == "-",
    )


def _report_switches(results: list[Any], as_json: bool) -> None:
    if as_json:
        _echo_json([r.as_json() for r in results])
        return
    for result in results:
        if result.skipped:
            click.echo(f"{result.name}: unchanged ({result.skipped})")
            continue
        target = "CDC" if result.to == "cdc" else "its audit triggers"
        verb = "disabled" if result.to == "cdc" else "enabled"
        detail = f"{verb} {', '.join(result.triggers) or 'none'}"
        if result.recreated:
            detail += f"; recreated {', '.join(result.recreated)} from backup {result.backup_id}"
        click.echo(
            f"{result.name}: on {target} from marker {result.marker_lsn} ({detail}; "
            f"{result.attempts} lock attempt(s))"
        )


@triggers.command()
@click.option("--table", "tables", multiple=True, metavar="T", help=TABLE_HELP)
@click.option("--phase", type=int, help="The tables of [migration] phases N.")
@click.option(
    "--dry-run", is_flag=True, help="Show every precondition and the SQL; change nothing."
)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@pass_state
@handles_errors
def cutover(
    state: State, tables: tuple[str, ...], phase: int | None, dry_run: bool, as_json: bool
) -> None:
    """Switch tables from their audit triggers to CDC: per table, in one transaction, disable
    its audit triggers and emit a cdc.cutover marker into the stream, so every change is
    recorded by exactly one of the two. Refuses (exit 5, nothing changed) unless CDC captures
    the table (publication, REPLICA IDENTITY FULL, slot healthy, daemon acknowledging, lag
    under [migration] max_lag_bytes) and a verified backup covers its triggers."""
    from cdc.cutover.migration.switch import cutover as run_cutover
    from cdc.cutover.migration.switch import preview_cutover
    from cdc.errors import PrerequisiteError

    settings = state.settings
    chosen = _tables(settings, tables, phase, required=True)
    if dry_run:
        plan, script = preview_cutover(settings, chosen, phase=phase)
        if as_json:
            _echo_json({**plan.as_json(), "sql": script})
        else:
            for table in plan.tables:
                click.echo(f"{table.name}: " + (table.skip or ("ready" if table.ok else "REFUSED")))
                for check in table.checks:
                    click.echo(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
            click.echo(script, nl=False)
            click.echo("-- dry run: nothing was changed")
        if not plan.ok:
            raise PrerequisiteError(plan.refusal())
        return
    _plan, results = run_cutover(settings, chosen, phase=phase)
    _report_switches(results, as_json)


@triggers.command()
@click.option("--table", "tables", multiple=True, metavar="T", help=TABLE_HELP)
@click.option("--phase", type=int, help="The tables of [migration] phases N.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@pass_state
@handles_errors
def rollback(state: State, tables: tuple[str, ...], phase: int | None, as_json: bool) -> None:
    """Switch tables back to their audit triggers: per table, in one transaction, restore each
    audit trigger's backed-up state (recreating it and its function from the backup when they
    were dropped) and emit a cdc.cutover marker "to": "triggers". Needs no working CDC."""
    from cdc.cutover.migration.switch import rollback as run_rollback

    settings = state.settings
    results = run_rollback(settings, _tables(settings, tables, phase, required=True), phase=phase)
    _report_switches(results, as_json)


@triggers.command()
@click.option("--table", "tables", multiple=True, metavar="T", help=TABLE_HELP)
@click.option("--dry-run", is_flag=True, help="Print the SQL; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@pass_state
@handles_errors
def drop(state: State, tables: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Drop the audit triggers of tables on CDC for at least [migration] soak_hours (and their
    functions once no trigger uses them), when a verified backup can recreate them. Without
    --table: every table that qualifies; the others are listed with the reason."""
    from cdc.cutover.migration.drop import drop_triggers

    settings = state.settings
    chosen = _tables(settings, tables, None, required=False) or None
    plan, script, done = drop_triggers(settings, chosen, dry_run=dry_run)
    if as_json:
        _echo_json({**plan.as_json(), "sql": script, "dry_run": dry_run, "done": done})
        return
    if dry_run or not plan.dropping:
        click.echo(script, nl=False)
        click.echo("-- dry run: nothing was changed" if dry_run else "-- nothing to drop")
        return
    for line in done:
        click.echo(f"done: {line}")
    for table in plan.tables:
        if table.kept is not None:
            click.echo(f"kept: {table.name}: {table.kept}")


@triggers.command()
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@pass_state
@handles_errors
def status(state: State, as_json: bool) -> None:
    """Where each table is (triggers, shadow, cdc, dropped), the daemon's view of it, and the
    records and legacy audit rows of the last hour (or since its latest switch)."""
    from cdc.cutover.migration.status import migration_status

    result = migration_status(state.settings)
    if as_json:
        _echo_json(result.as_json())
        return
    rows = [["TABLE", "MODE", "DAEMON", "SINCE", "RECORDS", "LEGACY", "SWITCHED", "NOTE"]]
    for table in result.tables:
        switch = table.switch
        rows.append(
            [
                table.name,
                table.mode,
                table.daemon.mode if table.daemon else "-",
                table.since.strftime("%Y-%m-%d %H:%M:%S"),
                "-" if table.records is None else str(table.records),
                "-"
                if table.legacy_rows is None
                else f"{table.legacy_rows}"
                + (f" (+{table.legacy_derived} derived)" if table.legacy_derived else ""),
                "-"
                if switch is None
                else f"{switch.mode} {switch.switched_at.strftime('%Y-%m-%d %H:%M')}",
                table.note or "",
            ]
        )
    for line in _columns(rows):
        click.echo(line)
    counts: dict[str, int] = {}
    for table in result.tables:
        counts[table.mode] = counts.get(table.mode, 0) + 1
    click.echo(
        ", ".join(f"{n} {mode}" for mode, n in sorted(counts.items()))
        + (f"; latest backup {result.backup_id}" if result.backup_id else "; no backup yet")
        + ("" if result.capture_modes else "; the daemon has recorded no cutover yet")
    )


@main.command()
@click.option(
    "--since", callback=_moment, help="Start: ISO 8601 or a duration ago (2h). Default: 1h."
)
@click.option("--until", callback=_moment, help="End: ISO 8601 or a duration ago. Default: now.")
@click.option("--table", "tables", multiple=True, metavar="T", help=TABLE_HELP)
@click.option(
    "--wait",
    "wait_seconds",
    type=float,
    help="How long to wait for the daemon to confirm the stream. Default: [migration] "
    "verify_wait_seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@pass_state
@handles_errors
def verify(
    state: State,
    since: datetime | None,
    until: datetime | None,
    tables: tuple[str, ...],
    wait_seconds: float | None,
    as_json: bool,
) -> None:
    """Shadow mode: compare the legacy audit rows with the activity records over a window,
    per table (matched by transaction, table, operation and row key; values column by column,
    except redacted and generated columns). Exit 9 on any row missing on either side or any
    value that differs."""
    from cdc.cutover.verify import verify as run_verify

    settings = state.settings
    chosen = _tables(settings, tables, None, required=False) or None
    report = run_verify(
        settings, since=since, until=until, tables=chosen, wait_seconds=wait_seconds
    )
    if as_json:
        _echo_json(report.as_json())
    else:
        rows = [
            [
                "TABLE",
                "MATCHED",
                "MISSING IN CDC",
                "MISSING IN LEGACY",
                "VALUES",
                "DERIVED",
                "IGNORED",
            ]
        ]
        for table in report.tables:
            rows.append(
                [
                    table.name,
                    str(table.matched),
                    str(table.missing_in_cdc),
                    str(table.missing_in_legacy),
                    str(table.value_differences),
                    str(table.derived),
                    str(table.ignored),
                ]
            )
        for line in _columns(rows):
            click.echo(line)
        for table in report.tables:
            for difference in table.differences:
                click.echo(f"{table.name}: {difference.describe()}")
        click.echo(report.summary())
    if not report.ok:
        raise VerifyFailed(report.summary() + "; see docs/migration.md (verify)")


@triggers.command("import-history")
@click.option("--since", metavar="TIME", callback=_moment, help="Legacy rows from this time on.")
@click.option("--until", metavar="TIME", callback=_moment, help="Legacy rows before this time.")
@click.option("--dry-run", is_flag=True, help="Read and map everything, write nothing.")
@click.option(
    "--chunk-rows", type=click.IntRange(min=1), default=10_000, show_default=True,
    help="Legacy rows per committed chunk.",
)  # fmt: skip
@pass_state
@handles_errors
def import_history_command(
    state: State,
    since: datetime | None,
    until: datetime | None,
    dry_run: bool,
    chunk_rows: int,
) -> None:
    """Import the legacy audit log of the configured tables as activity records (source
    "legacy"), mapped by the tables' rules, in chunks that each commit with the position after
    them: a killed import resumes, a finished one adds nothing, and transactions CDC recorded
    too (the shadow phase) are skipped. Prints progress (rows, rate, ETA) on stderr."""
    from cdc.cutover.history import ImportProgress, import_history
    from cdc.human import human_seconds

    def show(p: ImportProgress) -> None:
        share = f" ({p.rows_read / p.total:.1%})" if p.total else ""
        eta = f", ETA {human_seconds(p.eta_s)}" if p.eta_s is not None else ""
        click.echo(
            f"{p.rows_read:,} of {p.total:,} legacy rows{share}, {p.rate:,.0f} rows/s{eta}",
            err=True,
        )

    result = import_history(
        state.settings, since=since, until=until, dry_run=dry_run, chunk_rows=chunk_rows,
        progress=show,
    )  # fmt: skip
    where = (
        f"resumed after legacy id {result.resumed_after_id}"
        if result.resumed_after_id
        else ("from the start")
    )
    verb = "would import" if dry_run else "imported"
    click.echo(
        f"{verb} {result.records:,} records from {result.rows_read:,} legacy rows ({where}; "
        f"{result.skipped_shadow:,} already recorded by CDC, skipped); the log is done up to "
        f"legacy id {result.last_id}"
    )
