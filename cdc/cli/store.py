"""Reading and keeping the activity store: ``cdc activity`` (list, filter, search, export,
follow) and ``cdc activity history``, ``cdc stats``, ``cdc partitions``. Thin: options in,
one call of ``cdc.store`` / ``cdc.control.partitions``, rows out."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Generator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from cdc.cli.main import State, handles_errors, main, pass_state
from cdc.store import (
    DEFAULT_DIMENSIONS,
    DIMENSIONS,
    SEVERITIES,
    ActivityStats,
    RecordCursor,
    RecordFilter,
    Store,
    StoredRecord,
    activity_stats,
    open_store,
    parse_duration,
    parse_moment,
    severities_for,
    split_table,
)

FORMATS = ("table", "json", "csv")
T = TypeVar("T")


# Option callbacks: a bad value is a usage error (exit 2) that says what is expected.


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """ISO 8601 or a duration ago (``15m``): checked here, resolved against the database's
    clock once connected."""
    if value is not None:
        _usage(param, parse_moment, value, datetime.now(UTC))
    return value


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    length = _usage(param, parse_duration, value)
    if length <= timedelta(0):
        raise click.BadParameter(f"{value!r} is no window: give a duration above zero", param=param)
    return length


def _cursor(ctx: click.Context, param: click.Parameter, value: str | None) -> RecordCursor | None:
    return None if value is None else _usage(param, RecordCursor.parse, value)


def _usage(param: click.Parameter, parse: Callable[..., T], *args: Any) -> T:
    try:
        return parse(*args)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


# -- cdc activity ------------------------------------------------------------------------------


@main.group(invoke_without_command=True)
@click.option("--entity-type", help="Records of this entity type (e.g. investor).")
@click.option("--entity-id", help="Records of this entity key (with --entity-type: one entity).")
@click.option("--actor", help="Records of this actor id.")
@click.option("--source", help="Records of this source (database, application).")
@click.option("--action", help="Records of this action (e.g. kyc.approved).")
@click.option("--category", help="Records of this category.")
@click.option("--severity", type=click.Choice(SEVERITIES), help="Exactly this severity.")
@click.option(
    "--min-severity",
    type=click.Choice(SEVERITIES),
    help="This severity or higher (" + " < ".join(SEVERITIES) + ").",
)
@click.option("--table", "table", help="Records of this source table (schema.table or table).")
@click.option(
    "--operation", type=click.Choice(["insert", "update", "delete", "truncate", "message"])
)
@click.option(
    "--since", metavar="TIME", callback=_moment, help="From this time: ISO 8601 or ago (15m, 7d)."
)
@click.option("--until", metavar="TIME", callback=_moment, help="Before this time: same forms.")
@click.option(
    "--search",
    help="Full text over the summary (entity, actor, changed columns, action), and over the "
    'values with [store] search_values: words, "a phrase", -not, or.',
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Records per page; 0: all of them (an export).",
)
@click.option(
    "--before",
    metavar="CURSOR",
    callback=_cursor,
    help="The next page: the cursor a full page prints (next page: --before ...).",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--follow", is_flag=True, help="Then print new records as they are written.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between polls of --follow.",
)
@click.option("--max-polls", type=click.IntRange(min=0), hidden=True)
@click.option("--max-records", type=click.IntRange(min=1), hidden=True)
@pass_state
@handles_errors
def activity(
    state: State,
    entity_type: str | None,
    entity_id: str | None,
    actor: str | None,
    source: str | None,
    action: str | None,
    category: str | None,
    severity: str | None,
    min_severity: str | None,
    table: str | None,
    operation: str | None,
    since: str | None,
    until: str | None,
    search: str | None,
    limit: int,
    before: RecordCursor | None,
    fmt: str,
    follow: bool,
    interval: float,
    max_polls: int | None,
    max_records: int | None,
) -> None:
    """Activity records, newest first, with filters; export with --format json|csv --limit 0;
    tail with --follow. Filters combine (AND).

    \b
    cdc activity --entity-type investor --entity-id 42
    cdc activity --min-severity warning --since 24h
    cdc activity --search 'kyc.approved "by 17"' --format json
    cdc activity history public.investors 42
    """
    if click.get_current_context().invoked_subcommand is not None:
        return
    if follow and (before is not None or until is not None):
        raise click.UsageError(
            "--follow shows new records: it cannot be combined with --before or --until"
        )
    try:
        schema_name, table_name = split_table(table) if table else (None, None)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--table") from None
    if table:
        state.settings.configured_tables(table)  # a typo must not read as "no records"
    with open_store(state.settings) as store:
        now = store.now()  # the clock the commit times come from
        record_filter = RecordFilter(
            entity_type=entity_type,
            entity_id=entity_id,
            actor_id=actor,
            source=source,
            action=action,
            category=category,
            severities=severities_for(severity, min_severity),
            schema_name=schema_name,
            table_name=table_name,
            operation=operation,
            since=parse_moment(since, now) if since else None,
            until=parse_moment(until, now) if until else None,
            search=search,
        )
        out = _Output(fmt)
        if follow:
            _follow(store, record_filter, out, limit, interval, max_polls, max_records)
            return
        if fmt != "table":
            _export(store, record_filter, fmt, limit, before)
            return
        shown = 0
        last: StoredRecord | None = None
        for record in store.iter_records(record_filter, before=before, limit=limit or None):
            out.write([record])
            shown += 1
            last = record
        if limit and shown == limit and last is not None:
            click.echo(f"next page: --before '{last.cursor}'", err=True)
        elif shown == 0 and fmt == "table":
            click.echo("no records", err=True)


def _export(
    store: Store, record_filter: RecordFilter, fmt: str, limit: int, before: RecordCursor | None
) -> None:
    """JSON lines or CSV as the web export writes them: rendered by PostgreSQL (one COPY),
    the bytes written as they come."""
    written = _write(
        store.export(record_filter, fmt=_EXPORT[fmt], limit=limit or None, before=before)
    )
    if limit and written == limit:
        end = store.page_end(record_filter, before=before, limit=limit)
        if end is not None:
            click.echo(f"next page: --before '{end}'", err=True)


# --format of cdc activity -> the export's format
_EXPORT = {"json": "jsonl", "csv": "csv"}


def _write(pieces: Generator[bytes, None, int]) -> int:
    """Write an export's pieces to stdout as they come; how many records they held."""
    out = sys.stdout.buffer
    while True:
        try:
            out.write(next(pieces))
        except StopIteration as finished:
            out.flush()  # live: each poll's records as soon as they are read
            written: int = finished.value
            return written


def _follow(
    store: Store,
    record_filter: RecordFilter,
    out: _Output,
    limit: int,
    interval: float,
    max_polls: int | None,
    max_records: int | None,
) -> None:
    follower = store.follow(record_filter)
    export = _EXPORT.get(out.fmt)
    if export is not None:  # the export's bytes, as a page without --follow prints them
        shown = _write(follower.start_export(limit, fmt=export))
    else:
        shown = len(out.write(follower.start(limit)))
        out.flush()
    polls = 0
    try:
        while (max_polls is None or polls < max_polls) and (
            max_records is None or shown < max_records
        ):
            time.sleep(interval)
            if export is not None:
                shown += _write(follower.poll_export(fmt=export))
            else:
                shown += len(out.write(follower.poll()))
                out.flush()  # live: each poll's records as soon as they are read
            polls += 1
    except KeyboardInterrupt:
        pass  # ^C ends a follow: that is how it is meant to stop


class _Output:
    """Records to stdout as an aligned table (json and csv are the export's bytes)."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self._header_shown = False

    def write(self, records: list[StoredRecord]) -> list[StoredRecord]:
        if records and not self._header_shown:
            click.echo(TABLE_HEADER)
            self._header_shown = True
        for r in records:
            click.echo(_table_line(r))
        return records

    def flush(self) -> None:
        sys.stdout.flush()


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


TABLE_HEADER = (
    f"{'time (UTC)':<19}  {'severity':<8}  {'operation':<9}  {'entity':<24}  {'actor':<10}  summary"
)


def _table_line(r: StoredRecord) -> str:
    entity = f"{r.entity_type or '-'} {r.entity_id or ''}".strip()
    return (
        f"{_when(r.occurred_at)}  {r.severity:<8}  {r.operation:<9}  {entity:<24}  "
        f"{r.actor_id or '-':<10}  {r.summary or r.action}"
    )


@activity.command()
@click.argument("table")
@click.argument("entity_id")
@click.option("--entity-type", help="Default: the table's entity_type in the config.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_state
@handles_errors
def history(state: State, table: str, entity_id: str, entity_type: str | None, fmt: str) -> None:
    """The change history of one row of TABLE (schema.table, or a configured table's name)
    with key ENTITY_ID, oldest first, with what each update changed."""
    with open_store(state.settings) as store:
        try:
            if fmt == "json":  # the export's bytes, as cdc activity --format json prints them
                pieces = store.history_export(table, entity_id, entity_type=entity_type)
            else:
                records = store.history(table, entity_id, entity_type=entity_type)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="TABLE") from None
        shown = _write(pieces) if fmt == "json" else len(records)
    if not shown:
        click.echo(f"no records of {table} {entity_id}", err=True)
    if fmt != "json":
        for record in records:
            for line in history_lines(record):
                click.echo(line)


def history_lines(r: StoredRecord) -> list[str]:
    """One record of a history: a headline, then ``col: old → new`` per changed column (or
    the values of an inserted row)."""
    headline = r.summary or r.action
    if r.actor_id and f" by {r.actor_id}" not in headline:  # summaries name it since 0012
        headline += f"  by {r.actor_id}"
    lines = [f"{_when(r.occurred_at)}  {r.operation:<8}  {headline}"]
    if r.operation == "update" and isinstance(r.changes, dict):
        for column, change in r.changes.items():
            lines.append(f"    {column}: {_value(change.get('old'))} → {_value(change.get('new'))}")
    elif r.operation == "insert" and isinstance(r.new, dict):
        lines += [f"    {column}: {_value(value)}" for column, value in r.new.items()]
    return lines


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# -- cdc stats ---------------------------------------------------------------------------------


@main.command()
@click.option(
    "--since",
    "length",
    metavar="DURATION",
    callback=_duration,
    default="24h",
    show_default=True,
    help="The window: the last 15m, 6h, 7d ...",
)
@click.option(
    "--by",
    "dimensions",
    type=click.Choice(list(DIMENSIONS)),
    multiple=True,
    help="Breakdowns to show (repeatable). Default: source, category, severity, table.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@pass_state
@handles_errors
def stats(state: State, length: timedelta, dimensions: tuple[str, ...], as_json: bool) -> None:
    """Activity over a window, by source, category, severity and table, with the change from
    the window before and the trend. Read from the rollups: it costs the same at any size of
    the store."""
    with open_store(state.settings) as store:
        result = activity_stats(store, length, by=dimensions or DEFAULT_DIMENSIONS)
    if as_json:
        click.echo(json.dumps(result.as_json()))
        return
    for line in stats_lines(result):
        click.echo(line)


def stats_lines(result: ActivityStats) -> list[str]:
    w = result.window
    grain = {60: "minute", 3600: "hour"}.get(int(w.grain.total_seconds()), "day")
    lines = [
        f"{result.total:,} records from {_short(w.start)} to {_short(w.end)} UTC "
        f"(per-{grain} rollups)",
        f"the {_span(w.start - w.previous_start)} before: {result.previous_total:,} "
        f"({_change(result.change)})",
    ]
    for name, counts in result.breakdowns.items():
        width = max([len(c.value or "(none)") for c in counts] + [len(name) + 3])
        lines.append(
            f"\n{'by ' + name:<{width + 2}}  {'records':>9}  {'share':>6}  {'before':>9}  change"
        )
        for c in counts:
            share = f"{c.n / result.total:6.1%}" if result.total else "     -"
            lines.append(
                f"  {c.value or '(none)':<{width}}  {c.n:>9,}  {share}  {c.previous:>9,}  "
                f"{_change(c.change)}"
            )
    lines.append(f"\ntrend (per {_span(result.trend_step)})")
    peak = max([n for _, n in result.trend] + [1])
    for start, n in result.trend:
        lines.append(f"  {_short(start)}  {n:>9,}  {'#' * round(30 * n / peak)}".rstrip())
    return lines


def _short(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _change(change: float | None) -> str:
    return "new" if change is None else f"{change:+.1%}"


# -- cdc partitions ----------------------------------------------------------------------------


@main.command()
@click.option(
    "--ahead",
    type=click.IntRange(0, 120),
    help="Months to create after the current one. Default: [store] partitions_ahead (3).",
)
@click.option(
    "--retention-months",
    type=click.IntRange(min=1),
    help="Keep the current month and this many before it; remove older months. Default: "
    "[store] retention_months (none: keep everything).",
)
@click.option(
    "--export-dir",
    type=click.Path(file_okay=False, dir_okay=True, writable=True, exists=True, path_type=Path),
    help="Export each month to DIR/<schema>.<partition>.csv before dropping it.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be done; change nothing.")
@pass_state
@handles_errors
def partitions(
    state: State,
    ahead: int | None,
    retention_months: int | None,
    export_dir: Path | None,
    dry_run: bool,
) -> None:
    """Keep the monthly partitions of the activity store: create them ahead, remove the months
    past the retention (detach and drop: records are never deleted one by one). Idempotent;
    run it daily."""
    from cdc.control.partitions import apply_maintenance, plan_maintenance

    settings = state.settings
    plan = plan_maintenance(
        settings,
        ahead=settings.store.partitions_ahead if ahead is None else ahead,
        retention_months=(
            settings.store.retention_months if retention_months is None else retention_months
        ),
    )
    if dry_run:
        _echo_all("would: ", plan.describe() or ["nothing (the partitions are in place)"])
        if plan.describe() and export_dir is not None:
            click.echo(f"would: export each month to {export_dir} before dropping it")
    elif not _echo_all("done: ", apply_maintenance(settings, plan, export_dir=export_dir)):
        click.echo("nothing to do: the partitions are in place")
    _echo_all("note: ", plan.notes)


def _echo_all(prefix: str, lines: Iterable[str]) -> int:
    count = 0
    for line in lines:
        click.echo(prefix + line)
        count += 1
    return count
