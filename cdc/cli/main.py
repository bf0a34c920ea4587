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
from cdc.errors import EXIT_CODES, CdcError, ConnectError

F = TypeVar("F", bound=Callable[..., Any])

# The exit codes, generated from the one table in cdc/errors.py ("\b": click keeps the lines).
EXIT_CODES_HELP = "\b\nExit codes:\n" + "".join(
    f"  {code}  {meaning}\n" for code, meaning in EXIT_CODES.items()
)


def _fail(message: str, code: int, kind: str = "error") -> None:
    """The one line of a failure, with its exit code. Under ``--json`` it is a JSON object on
    stdout (every outcome of such a command is JSON); with ``--log-format json`` it is a JSON
    log line on stderr; else ``error: ...`` on stderr. Secrets are masked in all three."""
    from cdc.logs import mask_secrets

    message = mask_secrets(message)
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.params.get("as_json"):
        click.echo(json.dumps({"ok": False, "error": message, "kind": kind, "exit_code": code}))
    elif logging.getLogger().handlers and _json_logs(ctx):
        logging.getLogger("cdc.cli").error(message, extra={"kind": kind, "exit_code": code})
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _json_logs(ctx: click.Context | None) -> bool:
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and root.params.get("log_format") == "json")


def handles_errors(func: F) -> F:
    """CdcError → one line (see :func:`_fail`) and its exit code; anything else → exit 1, no
    traceback unless --log-level debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CdcError as exc:
            _fail(str(exc), exc.exit_code, type(exc).__name__)
        except click.UsageError as exc:
            ctx = click.get_current_context(silent=True)
            if ctx is not None and ctx.params.get("as_json"):
                _fail(exc.format_message(), exc.exit_code, "UsageError")
            raise
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            lost = _lost_connection(exc)
            if lost is not None:  # a restart or failover mid-command: not an internal error
                _fail(lost, ConnectError.exit_code, "ConnectError")
            _fail(
                f"unexpected internal error: {exc!r} (rerun with --log-level debug for the "
                "traceback, and please report it)",
                1,
                "internal",
            )

    return wrapper  # type: ignore[return-value]


def _lost_connection(exc: Exception) -> str | None:
    """The one line for a database connection lost under a command (the server restarted,
    failed over or ended the session) that no command turned into a CdcError itself."""
    import psycopg

    from cdc.retry import is_connection_loss

    if not isinstance(exc, psycopg.OperationalError) or not is_connection_loss(exc):
        return None
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return (
        f"lost the connection to the database: {first}; the command stopped there: run it "
        "again once the server answers"
    )


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


def _config_after_subcommand(
    ctx: click.Context, _param: click.Parameter, value: str | None
) -> None:
    if value is not None:
        state = ctx.find_object(State)
        if state is not None:
            state.config_path = value


class _Group(click.Group):
    """A group whose every command (and subgroup, and their commands) also takes ``--config``,
    so that ``cdc check --config x`` works as well as ``cdc --config x check``."""

    group_class = type  # subgroups are _Groups too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any("--config" in getattr(param, "opts", ()) for param in cmd.params):
            cmd.params.append(
                click.Option(
                    ["--config", "_config_path"],
                    type=click.Path(dir_okay=False),
                    expose_value=False,
                    is_eager=True,
                    callback=_config_after_subcommand,
                    help="Config file (TOML); the same as cdc --config.",
                )
            )
        super().add_command(cmd, name)


@click.group(cls=_Group, epilog=EXIT_CODES_HELP)
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
@click.option(
    "--log-format",
    default="human",
    show_default=True,
    envvar="CDC_LOG_FORMAT",
    type=click.Choice(["human", "json"]),
    help="human: one text line per event; json: one JSON object per line.",
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None, log_level: str, log_format: str) -> None:
    """activity-cdc: record every row change of your audited tables as an activity record,
    from PostgreSQL logical replication instead of audit triggers.

    \b
    Start:        cdc init       (a starting cdc.toml from the database's catalog)
    First time:   cdc setup      (schema, publication, replica identity, slot)
    Verify:       cdc check      (every prerequisite, with the fix)
    Then:         cdc run        (the daemon; --drain to catch up and exit)
    Watch:        cdc lag        (how far behind, in bytes and seconds)
    Baseline:     cdc backfill   (a record per existing row, consistent with the stream)
    Remove:       cdc teardown   (slot and publication; never the records)
    Try it:       cdc demo       (everything on a throwaway local Postgres)
    """
    from cdc.logs import configure_logging

    configure_logging(log_level, "json" if log_format == "json" else "human")
    ctx.obj = State(config_path)


@main.command()
@click.option(
    "--drain",
    is_flag=True,
    help="Record everything committed before the start, acknowledge it, and exit 0 "
    "(no reconnects: a lost connection exits with its error).",
)
@pass_state
@handles_errors
def run(state: State, drain: bool) -> None:
    """Run the daemon. A lost connection (server restart, failover) is retried with backoff;
    while another daemon streams from the slot this one waits as a hot standby. SIGTERM/SIGINT:
    finish the batch in hand, acknowledge it, exit 0; a second signal exits at once (nothing
    unwritten is ever acknowledged). SIGHUP: reload the mapping, redaction and batch settings
    from the config file."""
    from cdc.service.run import Service, prompt_threads, quiet_collector

    service = Service(state.settings, drain=drain)
    quiet_collector()  # this process is the daemon's
    prompt_threads()
    signals_seen = 0

    def on_hangup(_signum: int, _frame: FrameType | None) -> None:
        service.reload(lambda: load_settings(state.config_path))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            os._exit(128 + signum)
        service.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    outcome = service.run()
    stats, reconnects = outcome.stats, outcome.reconnects
    from cdc.human import human_seconds

    click.echo(
        f"{stats.records} records from {stats.transactions} transactions "
        f"({stats.changes} changes, {stats.skipped_transactions} transactions already recorded) "
        f"in {human_seconds(stats.elapsed_s)}; acknowledged through {_lsn(stats.flushed_lsn)}"
        + (f"; {reconnects} reconnects" if reconnects else ""),
        err=True,
    )


def _lsn(value: int) -> str:
    from cdc.lsn import format_lsn

    return format_lsn(value)


@main.command()
@click.option("--seconds", default=10.0, show_default=True, help="How long the workload runs.")
@click.option("--clients", default=2, show_default=True, help="Concurrent workload clients.")
@click.option(
    "--serve",
    is_flag=True,
    help="Then serve the monitor and dashboard on the demo's records (with a slow workload "
    "and the daemon still running) until Ctrl-C.",
)
@click.option("--port", type=click.IntRange(1, 65535), help="Port of --serve (default 8080).")
@handles_errors
def demo(seconds: float, clients: int, serve: bool, port: int | None) -> None:
    """Everything on a throwaway local PostgreSQL: the 18-table demo platform, setup, the
    daemon, a mixed workload, and the records it produced; --serve shows them in the browser.
    Cleans up after itself."""
    from cdc.demo.run import DemoOptions, run_demo

    root = logging.getLogger()
    root.setLevel(max(root.level, logging.WARNING))  # the demo's own lines tell the story
    if serve:
        # --serve runs until stopped: SIGTERM and SIGINT (even when a shell started it in the
        # background with SIGINT ignored) end it the same way, removing the cluster
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for line in run_demo(
            DemoOptions(duration_s=seconds, clients=clients, serve=serve, port=port)
        ):
            click.echo(line)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)  # Ctrl-C is how --serve ends; the cluster is removed
