"""Operations commands: ``setup`` (plan, dry run, least-privilege role), ``check``, ``lag``
(with ``--watch``) and ``teardown``. Imported by ``cdc.cli``, after ``cdc.cli.main``.

``setup`` and ``lag`` here replace the first versions that ``cdc/cli/main.py`` defines under the
same names (``main.command`` registers by name; the later registration wins)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cdc.cli.main import State, handles_errors, main, pass_state
from cdc.errors import LagExceeded


@main.command()
@click.option("--dry-run", is_flag=True, help="Print the plan's SQL and change nothing.")
@click.option(
    "--print-role-sql",
    is_flag=True,
    help="Print the SQL for a least-privilege role for the daemon, and exit.",
)
@click.option(
    "--reader",
    is_flag=True,
    help="With --print-role-sql: the read-only role of cdc serve instead (SELECT on the store "
    "and its rollups, nothing else).",
)
@click.option(
    "--ingest",
    is_flag=True,
    help="With --print-role-sql: the role of cdc ingest instead (the store's records, rollups, "
    "chain head and ingest positions; no REPLICATION, nothing on a source).",
)
@click.option(
    "--role",
    default=None,
    metavar="NAME",
    help="Role name for --print-role-sql.  [default: activity_cdc, activity_cdc_reader with "
    "--reader, activity_cdc_ingest with --ingest]",
)
@pass_state
@handles_errors
def setup(
    state: State,
    dry_run: bool,
    print_role_sql: bool,
    reader: bool,
    ingest: bool,
    role: str | None,
) -> None:
    """Create what the daemon needs (idempotent): the activity store, the publication for the
    configured tables, REPLICA IDENTITY FULL on them, and the replication slot. Shows its plan
    first; --dry-run shows the exact SQL and stops."""
    if (role is not None or reader or ingest) and not print_role_sql:
        raise click.UsageError("--role, --reader and --ingest go with --print-role-sql")
    if reader and ingest:
        raise click.UsageError("--reader and --ingest print different roles: choose one")
    if print_role_sql:
        from cdc.control.roles import (
            DEFAULT_ROLE,
            INGEST_ROLE,
            READER_ROLE,
            ingest_role_sql,
            reader_role_sql,
            role_sql,
        )

        if ingest:
            click.echo(ingest_role_sql(state.settings, role or INGEST_ROLE), nl=False)
        elif reader:
            click.echo(reader_role_sql(state.settings, role or READER_ROLE), nl=False)
        else:
            click.echo(role_sql(state.settings, role or DEFAULT_ROLE), nl=False)
        return
    from cdc.control.setup import apply_plan, plan_setup

    plan = plan_setup(state.settings)
    broker = state.settings.sink if state.settings.sink.kind == "jetstream" else None
    if dry_run:
        click.echo(plan.script(), nl=False)
        if broker is not None:
            from cdc.pipeline.jetstream_broker import plan_broker

            click.echo(plan_broker(broker).script(), nl=False)
        click.echo("-- dry run: nothing was changed")
        return
    if broker is not None:
        from cdc.pipeline.jetstream_broker import apply_broker

        broker_plan, done = apply_broker(broker)
        for line in broker_plan.unchanged:
            click.echo(f"ok:   {line}")
        for line in done:
            click.echo(f"done: {line}")
    for line in plan.unchanged:
        click.echo(f"ok:   {line}")
    if not plan.steps:
        click.echo("nothing to do: everything was already set up")
        return
    click.echo(f"plan: {len(plan.steps)} step(s)")
    for number, step in enumerate(plan.steps, 1):
        click.echo(f"  {number}. {step.description} ({step.target})")
    report = apply_plan(state.settings, plan)
    for line in report.actions:
        click.echo(f"done: {line}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@pass_state
@handles_errors
def check(state: State, as_json: bool) -> None:
    """Verify every prerequisite, one line each with the fix. Exit 0 when all pass, else the
    code of the worst failure: 5 server/privileges, 4 config/tables, 8 activity store,
    6 publication/replica identity/slot."""
    from cdc.control.checks import run_checks

    report = run_checks(state.settings)
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        for item in report.checks:
            click.echo(item.line())
    if report.exit_code:
        sys.exit(report.exit_code)


@main.command()
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object (per sample) instead of text."
)
@click.option(
    "--max-bytes",
    type=click.IntRange(min=0),
    help="Exit 3 when unconfirmed WAL exceeds this.",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0),
    help="Exit 3 when the last recorded commit is older than this.",
)
@click.option(
    "--watch",
    "watch_s",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Take a sample every SECONDS until interrupted (one line each).",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    help="With --watch: stop after this many samples.",
)
@pass_state
@handles_errors
def lag(
    state: State,
    as_json: bool,
    max_bytes: int | None,
    max_seconds: float | None,
    watch_s: float | None,
    count: int | None,
) -> None:
    """How far behind the daemon is: WAL retained by the slot, WAL not yet confirmed, and the
    time since the last recorded commit. With --watch, exit 3 if any sample was over a
    threshold."""
    from cdc.control.lag import over_thresholds, slot_lag, watch

    if count is not None and watch_s is None:
        raise click.UsageError("--count goes with --watch")
    if watch_s is None:
        result = slot_lag(state.settings)
        if as_json:
            click.echo(json.dumps(result.as_json()))
        else:
            click.echo("\n".join(result.describe()))
        over = over_thresholds(result, max_bytes=max_bytes, max_seconds=max_seconds)
        if over:
            raise LagExceeded("lag over threshold: " + "; ".join(over))
        return

    samples = samples_over = 0
    last_over: list[str] = []
    try:
        for result in watch(state.settings, watch_s, count=count):
            samples += 1
            click.echo(json.dumps(result.as_json()) if as_json else result.summary())
            over = over_thresholds(result, max_bytes=max_bytes, max_seconds=max_seconds)
            if over:
                samples_over += 1
                last_over = over
                click.echo("over threshold: " + "; ".join(over), err=True)
    except KeyboardInterrupt:
        pass
    if samples_over:
        raise LagExceeded(
            f"lag over threshold in {samples_over} of {samples} sample(s), last: "
            + "; ".join(last_over)
        )


@main.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
@handles_errors
def teardown(state: State, yes: bool) -> None:
    """Drop the replication slot and the publication (after confirmation). Refuses while a
    process streams from the slot. Never drops the activity store: records and checkpoints
    stay."""
    from cdc.control.setup import plan_teardown
    from cdc.control.setup import teardown as run_teardown

    settings = state.settings
    plan = plan_teardown(settings)
    if plan.empty:
        click.echo(
            f"nothing to drop: slot {settings.source.slot} and publication "
            f"{settings.source.publication} do not exist on {plan.source}"
        )
        return
    for line in plan.describe():
        click.echo(f"will {line} on {plan.source}")
    click.echo(f"will keep the activity store ({settings.sink.table} and its checkpoints)")
    try:
        confirmed = yes or click.confirm("Drop them?", default=False)
    except click.Abort:  # no answer (end of input)
        confirmed = False
    if not confirmed:
        click.echo("nothing was dropped (confirm, or pass --yes)", err=True)
        sys.exit(2)
    for line in run_teardown(settings, plan):
        click.echo(f"done: {line}")
    if plan.last_commit_lsn:
        when = plan.last_commit_time.isoformat() if plan.last_commit_time else "unknown time"
        click.echo(
            f"the records end at source commit {plan.last_commit_lsn} ({when}); a new "
            "cdc setup captures from its own start: changes committed in between are not "
            "recorded (see docs/operations.md)"
        )


@main.command()
@click.option(
    "--dsn",
    envvar="CDC_SOURCE_DSN",
    metavar="DSN",
    help="The source database. Default: $CDC_SOURCE_DSN. Its password is not written.",
)
@click.option(
    "--tables",
    "patterns",
    multiple=True,
    metavar="PATTERNS",
    help="Tables to capture: schema.table or table, globs allowed, comma-separated or "
    "repeated. Default: every table outside the system schemas.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    help="Where to write it. Default: --config, else $CDC_CONFIG, else ./cdc.toml; - for stdout.",
)
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
@pass_state
@handles_errors
def init(
    state: State, dsn: str | None, patterns: tuple[str, ...], output: str | None, force: bool
) -> None:
    """Write a starting config from the source database's catalog: one [[tables]] entry per
    table with a primary key, its actor-like columns, and the sensitive-looking columns to
    redact. Read and edit it, then run cdc setup."""
    from cdc.config import config_path
    from cdc.control.init import read_catalog, select_tables, starting_config
    from cdc.errors import ConfigError

    if not dsn:
        raise click.UsageError("give the source database: --dsn DSN or $CDC_SOURCE_DSN")
    wanted = [part.strip() for pattern in patterns for part in pattern.split(",") if part.strip()]
    text = starting_config(dsn, select_tables(read_catalog(dsn), wanted))
    if output == "-":
        click.echo(text, nl=False)
        return
    target = Path(output) if output else config_path(state.config_path)
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; pass --force to replace it, or --output another path")
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write the config: {exc.strerror}") from None
    tables = text.count("\n[[tables]]")
    click.echo(
        f"wrote {target}: {tables} table(s); read it, then: cdc --config {target} setup --dry-run"
    )


@main.command()
@click.option(
    "--table",
    "tables",
    multiple=True,
    required=True,
    metavar="TABLE",
    help="A configured table (schema.table or table); repeat for more.",
)
@pass_state
@handles_errors
def backfill(state: State, tables: tuple[str, ...]) -> None:
    """Record a baseline of every existing row of TABLE (operation "snapshot"), from a snapshot
    consistent with the replication stream: the baseline and the records after it replay to
    the table as it is, nothing missed or doubled. One transaction per table: a failed
    backfill leaves nothing. Also how to re-baseline after an invalidated slot (after cdc
    teardown and cdc setup)."""
    from cdc.pipeline.backfill import backfill as run_backfill

    for table in tables:
        result = run_backfill(state.settings, table)
        click.echo(
            f"{result.table}: {result.records:,} baseline records at {result.consistent_lsn} "
            f"(snapshot of {result.snapshot_time.isoformat(timespec='seconds')})"
        )
