"""``cdc ingest --from jetstream --to DSN``: the records of a JetStream stream into a store
(cdc.service.ingest; docs/scale-out.md). Imported by ``cdc.cli``, after ``cdc.cli.main``."""

from __future__ import annotations

import os
import signal
from types import FrameType

import click

from cdc.cli.main import State, handles_errors, main, pass_state
from cdc.config import load_settings


@main.command()
@click.option(
    "--from",
    "origin",
    type=click.Choice(["jetstream"]),
    default="jetstream",
    show_default=True,
    help="Where the records come from: the stream of [sink] (servers, stream) in the config.",
)
@click.option(
    "--to",
    "store_dsn",
    envvar="CDC_STORE_DSN",
    required=True,
    help="The store's database (or CDC_STORE_DSN); ingest creates or migrates the store there "
    "like setup does ([sink] table names it).",
)
@click.option(
    "--consumer",
    default="activity_ingest",
    show_default=True,
    help="The durable consumer; processes with the same one share the work.",
)
@click.option("--batch", "batch_max", default=2000, show_default=True, help="Messages per batch.")
@click.option(
    "--ack-wait",
    "ack_wait_s",
    default=30.0,
    show_default=True,
    help="Seconds before JetStream delivers an unacknowledged message again (to any process).",
)
@click.option(
    "--drain", is_flag=True, help="Stop once everything the stream held at the start is written."
)
@pass_state
@handles_errors
def ingest(
    state: State,
    origin: str,
    store_dsn: str,
    consumer: str,
    batch_max: int,
    ack_wait_s: float,
    drain: bool,
) -> None:
    """Write the records of the JetStream stream into an activity store, exactly once: each
    batch is written with the stream sequences it covers in one transaction and acknowledged
    to JetStream after the commit. SIGTERM/SIGINT: finish the batch in hand and exit 0."""
    from cdc.service.ingest import Ingest, IngestOptions

    del origin  # one choice today; the option names it so scripts stay explicit
    settings = load_settings(state.config_path, require_source=False)
    if settings.sink.kind != "jetstream":
        raise click.UsageError(
            'the config\'s [sink] kind is not "jetstream": ingest reads the stream that '
            "[sink] servers and stream name"
        )
    runner = Ingest(
        settings,
        IngestOptions(
            store_dsn=store_dsn,
            consumer=consumer,
            batch_max=batch_max,
            ack_wait_s=ack_wait_s,
            drain=drain,
        ),
    )
    signals_seen = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            os._exit(128 + signum)
        runner.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stats = runner.run()
    click.echo(
        f"{stats.records} records written from {stats.messages} messages "
        f"({stats.already_stored} already in the store, {stats.duplicates} held twice in the "
        f"stream and written once, {stats.rejected} not records) "
        f"in {stats.elapsed_s:.1f}s",
        err=True,
    )
