"""``cdc verify-chain``: recompute the activity records' hash chain and name the first record
that was changed, deleted or inserted out of band (cdc/store/chain.py). Exit 0 intact, 9 broken."""

from __future__ import annotations

import json

import click

from cdc.cli.main import State, handles_errors, main, pass_state
from cdc.cli.store import _moment  # the same TIME forms as cdc activity --since
from cdc.connect import connect
from cdc.errors import ChainBroken
from cdc.store import parse_moment
from cdc.store.chain import ChainReport, record_verification, verify_chain


@main.command("verify-chain")
@click.option(
    "--since",
    metavar="TIME",
    callback=_moment,
    help="From the first record at this time (ISO 8601 or ago: 24h, 7d), trusting its link to "
    "the one before. Default: every record.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@pass_state
@handles_errors
def verify_chain_command(state: State, since: str | None, as_json: bool) -> None:
    """Recompute every record's hash from its stored values and check each link and the head.
    Names the first record changed, deleted or inserted out of band; exits 9 if there is one.
    Keep the printed head hash elsewhere: it anchors the next check."""
    settings = state.settings
    with connect(settings.sink_dsn, role="sink", autocommit=True) as conn:
        moment = None
        if since is not None:
            row = conn.execute("SELECT now()").fetchone()
            assert row is not None
            moment = parse_moment(since, row[0])
        report = verify_chain(
            conn, settings.sink.schema_name, settings.sink.table_name, since=moment
        )
        conn.autocommit = True
        unkept = record_verification(conn, settings.sink.schema_name, report, since=moment)
    if unkept is not None:
        click.echo(f"note: {unkept}", err=True)
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        for line in report_lines(report):
            click.echo(line)
    if report.problem is not None:
        raise ChainBroken(f"hash chain broken: {report.problem}")


def report_lines(report: ChainReport) -> list[str]:
    lines = []
    if report.first is not None and report.last is not None:
        lines.append(
            f"checked {report.checked:,} record(s): commit {report.first.commit_lsn} seq "
            f"{report.first.seq} ({report.first.occurred_at} UTC) to commit "
            f"{report.last.commit_lsn} seq {report.last.seq} ({report.last.occurred_at} UTC)"
        )
    else:
        lines.append(f"checked {report.checked:,} record(s)")
    if report.unchained:
        lines.append(
            f"{report.unchained:,} older record(s) carry no hash (written before the chain)"
        )
    lines.extend(f"note: {note}" for note in report.notes)
    if report.problem is None:
        lines.append(f"chain intact; head {report.head.hex()}")
    return lines
