"""``cdc check``: every prerequisite of the daemon, one :class:`Check` each, with the fix.

Only reads; works with the daemon's least-privilege role. Checks come in the order you would
fix things: the server, the role, the tables, the publication, the slot, the sink.

Exit code: the worst failing check decides, worst first: 5 (server settings, connections,
privileges: an administrator must act), 4 (configuration: a configured table does not exist),
8 (the activity store is missing or behind its migrations), 6 (publication, replica identity or
slot: ``cdc setup`` creates them; an invalidated slot needs ``cdc teardown`` first). Warnings
never fail.
"""

from __future__ import annotations

from cdc.config import Settings
from cdc.connect import connect
from cdc.control.check_report import SERVER, STORE, CheckReport
from cdc.control.sink_checks import check_sink
from cdc.control.source_checks import check_source
from cdc.errors import ConnectError


def run_checks(settings: Settings) -> CheckReport:
    """Verify everything; never raises a CdcError for a failed prerequisite (it is reported)."""
    report = CheckReport()
    try:
        source = connect(settings.source.dsn)
    except ConnectError as exc:
        report.fail("source", str(exc), SERVER)
        if settings.sink_dsn == settings.source.dsn:
            return report  # the same failure again would teach nothing
    else:
        with source:
            check_source(source, settings, report)
    try:
        sink = connect(settings.sink_dsn, role="sink")
    except ConnectError as exc:
        report.fail("sink", str(exc), SERVER)
    else:
        with sink:
            check_sink(sink, settings, report)
    if settings.sink.kind == "jetstream":
        _check_jetstream(settings, report)
    return report


def _check_jetstream(settings: Settings, report: CheckReport) -> None:
    """The stream and the bucket the daemon publishes into (docs/scale-out.md)."""
    from cdc.pipeline.jetstream_lag import jetstream_lag

    sink = settings.sink
    lag = jetstream_lag(sink)
    if lag.error is not None:
        unreachable = "did not answer" in lag.error or "cannot connect" in lag.error
        report.fail(
            "jetstream",
            lag.error
            + (
                "; the daemon retries and acknowledges nothing meanwhile: the slot retains "
                "the WAL until the cluster is back"
                if unreachable
                else ""
            ),
            SERVER if unreachable else STORE,
        )
        return
    report.ok(
        "jetstream",
        f"stream {sink.stream} at {', '.join(sink.servers)}: {lag.messages} messages, "
        f"{len(lag.consumers)} consumer(s)",
    )
