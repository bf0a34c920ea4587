"""``cdc``: the command line of activity-cdc. Thin: each command reads its options, calls one
function of ``cdc``, and turns the result or a ``CdcError`` into output and an exit code."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

import click

from cdc import __version__
from cdc.config import Settings, load_settings
from cdc.errors import CdcError, LagExceeded

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = """\b
Exit codes:
  0  success                      5  cannot connect / server not ready
  1  unexpected internal error    6  slot or publication missing or busy
  2  usage error                  7  malformed replication data
  3  lag over a threshold         8  the sink could not write records
  4  configuration error
"""


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handles_errors(func: F) -> F:
    """CdcError → one line on stderr and its exit code; anything else → exit 1, no traceback
    unless --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CdcError as exc:
            _fail(str(exc), exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            _fail(
                f"unexpected internal error: {exc!r} (rerun with --log-level debug for the "
                "traceback, and please report it)",
                1,
            )

    return wrapper  # type: ignore[return-value]


class State:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


pass_state = click.make_pass_decorator(State)


@click.group(epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="cdc")
@click.option(
    "--config",
    "config_path",
    envvar="CDC_CONFIG",
    type=click.Path(dir_okay=False),
    help="Config file (TOML). Default: $CDC_CONFIG, else ./cdc.toml.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None, log_level: str) -> None:
    """activity-cdc: record every row change of your audited tables as an activity record,
    from PostgreSQL logical replication instead of audit triggers.

    \b
    First time:   cdc setup      (schema, publication, replica identity, slot)
    Then:         cdc run        (the daemon; --drain to catch up and exit)
    Watch:        cdc lag        (how far behind, in bytes and seconds)
    Try it:       cdc demo       (everything on a throwaway local Postgres)
    """
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = State(config_path)


@main.command()
@pass_state
@handles_errors
def setup(state: State) -> None:
    """Create what the daemon needs (idempotent): the activity store, the publication for the
    configured tables, REPLICA IDENTITY FULL on them, and the replication slot."""
    from cdc.provision import setup as run_setup

    report = run_setup(state.settings)
    for line in report.actions:
        click.echo(f"done: {line}")
    for line in report.unchanged:
        click.echo(f"ok:   {line}")
    if not report.actions:
        click.echo("nothing to do: everything was already set up")


@main.command()
@click.option(
    "--drain",
    is_flag=True,
    help="Record everything committed before the start, acknowledge it, and exit 0.",
)
@pass_state
@handles_errors
def run(state: State, drain: bool) -> None:
    """Run the daemon. SIGTERM/SIGINT: finish the batch in hand, acknowledge it, exit 0;
    a second signal exits at once (nothing unwritten is ever acknowledged)."""
    from cdc.daemon import Daemon

    daemon = Daemon(state.settings, drain=drain)
    signals_seen = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            os._exit(128 + signum)
        daemon.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stats = daemon.run()
    finally:
        daemon.close()
    click.echo(
        f"{stats.records} records from {stats.transactions} transactions "
        f"({stats.changes} changes, {stats.skipped_transactions} transactions already recorded) "
        f"in {stats.elapsed_s:.1f}s; acknowledged through {_lsn(stats.flushed_lsn)}",
        err=True,
    )


def _lsn(value: int) -> str:
    from cdc.lsn import format_lsn

    return format_lsn(value)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@click.option("--max-bytes", type=int, help="Exit 3 when unconfirmed WAL exceeds this.")
@click.option(
    "--max-seconds", type=float, help="Exit 3 when the last recorded commit is older than this."
)
@pass_state
@handles_errors
def lag(state: State, as_json: bool, max_bytes: int | None, max_seconds: float | None) -> None:
    """How far behind the daemon is: WAL retained by the slot, WAL not yet confirmed, and the
    time since the last recorded commit."""
    from cdc.lag import slot_lag

    result = slot_lag(state.settings)
    if as_json:
        click.echo(json.dumps(result.as_json()))
    else:
        age = result.seconds_since_last_recorded_commit
        activity = f"active (pid {result.active_pid})" if result.active else "inactive"
        click.echo(
            f"slot {result.slot}: {activity}, "
            f"wal_status {result.wal_status}\n"
            f"  unconfirmed: {result.unconfirmed_bytes} bytes "
            f"(confirmed {result.confirmed_flush_lsn}, server at {result.current_lsn})\n"
            f"  retained:    {result.retained_bytes} bytes (restart {result.restart_lsn})\n"
            f"  last recorded commit: "
            + (
                f"{result.last_recorded_commit_at.isoformat()} ({age:.1f}s ago)"
                if result.last_recorded_commit_at and age is not None
                else "none yet"
            )
        )
    over = []
    if max_bytes is not None and (result.unconfirmed_bytes or 0) > max_bytes:
        over.append(f"unconfirmed {result.unconfirmed_bytes} bytes > {max_bytes}")
    if max_seconds is not None:
        age = result.seconds_since_last_recorded_commit
        if age is None or age > max_seconds:
            over.append(
                f"last recorded commit {'never' if age is None else f'{age:.1f}s ago'}"
                f" > {max_seconds}s"
            )
    if over:
        raise LagExceeded("lag over threshold: " + "; ".join(over))


@main.command()
@click.option("--seconds", default=10.0, show_default=True, help="How long the workload runs.")
@click.option("--clients", default=2, show_default=True, help="Concurrent workload clients.")
@handles_errors
def demo(seconds: float, clients: int) -> None:
    """Everything on a throwaway local PostgreSQL: the 18-table demo platform, setup, the
    daemon, a mixed workload, and the records it produced. Cleans up after itself."""
    from cdc.demo import DemoOptions, run_demo

    root = logging.getLogger()
    root.setLevel(max(root.level, logging.WARNING))  # the demo's own lines tell the story
    for line in run_demo(DemoOptions(duration_s=seconds, clients=clients)):
        click.echo(line)


# Command groups that live in their own modules register themselves here.
def _register_commands() -> None:
    import importlib

    for module in ("cli.ops", "cli.store"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


_register_commands()
