"""Shadow mode and the switch under load, on a real PostgreSQL with the demo platform:

* ``cdc verify`` finds the legacy audit log and the activity records equal while both run, and
  finds every difference injected into either side;
* concurrent writers (the demo workload, four clients) run through a cutover and a rollback, and
  every committed row change is recorded exactly once: by the legacy triggers before the
  ``cdc.cutover`` marker of its table, by CDC after it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cdc.cli.main import main
from cdc.config import Settings, settings_from_mapping
from cdc.connect import connect
from cdc.control.setup import setup
from cdc.cutover.migration.backup import take_backup
from cdc.cutover.migration.switch import cutover, rollback
from cdc.cutover.verify import verify, wait_for_confirmation
from cdc.demo.workload import PLATFORM_TABLES, GroundTruth, load_platform_schema, run_workload
from cdc.errors import LagExceeded
from cdc.lsn import Lsn
from cdc.service.daemon import Daemon
from tests.fix_pg import PgDatabase
from tests.integration.helpers import make_settings

pytestmark = [pytest.mark.integration, pytest.mark.every_server]

EXAMPLE_CONFIG = Path(__file__).parents[2] / "examples" / "platform.toml"


@contextlib.contextmanager
def running_daemon(settings: Settings) -> Iterator[Daemon]:
    """The daemon streaming in a thread, as in production; stopped (and checked) on exit."""
    daemon = Daemon(settings)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, name="cdc-daemon")
    thread.start()
    try:
        yield daemon
    finally:
        daemon.request_stop()
        thread.join(timeout=60)
        daemon.close()
        if failures:  # the daemon's own error explains whatever failed in the block
            raise failures[0]
    assert not thread.is_alive(), "the daemon did not stop"


def caught_up(settings: Settings) -> None:
    """Wait until the daemon has recorded everything committed so far."""
    with connect(settings.source.dsn) as conn:
        row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        wait_for_confirmation(conn, settings, row[0], 120)


def demo_settings(pg: PgDatabase, **migration: Any) -> Settings:
    """The shipped rules for the 18 tables (ignored and redacted columns included)."""
    data = tomllib.loads(EXAMPLE_CONFIG.read_text())
    data["source"] = {"dsn": pg.dsn, "slot": pg.slot, "publication": pg.publication}
    data["batch"] = {"max_rows": 500, "max_delay_ms": 20}
    data["migration"] = migration
    return settings_from_mapping(data, env={})


def demo_platform(pg: PgDatabase, settings: Settings) -> None:
    with pg.connect() as conn:
        load_platform_schema(conn, legacy_triggers=True)
    setup(settings)


def cdc(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), "--log-level", "warning", *args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def write_demo_config(path: Path, pg: PgDatabase) -> Path:
    text = EXAMPLE_CONFIG.read_text().replace(
        '[source]\ndsn = "host=127.0.0.1 port=5432 dbname=platform user=cdc"',
        f"[source]\ndsn = '{pg.dsn}'",
    )
    text = text.replace('slot = "activity_cdc"', f'slot = "{pg.slot}"')
    text = text.replace('publication = "activity_cdc"', f'publication = "{pg.publication}"')
    assert pg.dsn in text and pg.slot in text and pg.publication in text
    path.write_text(text)
    return path


def legacy_row_changes(pg: PgDatabase) -> Counter[tuple[str, str]]:
    rows = pg.execute(
        "SELECT table_name, lower(operation), count(*) FROM public.audit_log"
        " WHERE operation IN ('INSERT', 'UPDATE', 'DELETE') GROUP BY 1, 2"
    )
    return Counter({(table, op): n for table, op, n in rows})


# -------------------------------------------------------------------------------------------------
# verify
# -------------------------------------------------------------------------------------------------


def test_verify_finds_the_shadow_records_equal_to_the_legacy_audit_log(
    pg: PgDatabase, tmp_path: Path
) -> None:
    settings = demo_settings(pg)
    demo_platform(pg, settings)
    before = pg.execute("SELECT now()")[0][0]
    with running_daemon(settings):
        run_workload(pg.dsn, transactions=150, clients=2, rng_seed=3)
        report = verify(settings, wait_seconds=60)
        code, out = cdc(write_demo_config(tmp_path / "cdc.toml", pg), "verify", "--json")
        empty = verify(settings, until=before, wait_seconds=60)

    assert report.ok, report.as_json()
    legacy = pg.execute(
        "SELECT count(*) FILTER (WHERE operation IN ('INSERT', 'UPDATE', 'DELETE')),"
        " count(*) FILTER (WHERE operation NOT IN ('INSERT', 'UPDATE', 'DELETE'))"
        " FROM public.audit_log"
    )[0]
    records = pg.execute("SELECT count(*) FROM activity.records")[0][0]
    assert report.total("matched") == records
    assert report.total("matched") + report.total("ignored") == legacy[0]
    assert report.total("derived") == legacy[1] > 0  # STATUS_CHANGE, AMOUNT_CHANGE
    assert report.total("ignored") > 0  # last_seen_at / updated_at only: no record by design
    assert {t.name for t in report.tables} == {f"public.{t}" for t in PLATFORM_TABLES}
    assert code == 0, out
    assert '"ok": true' in out
    assert empty.ok and empty.total("matched") == 0  # nothing before the workload


def test_verify_finds_each_difference_injected_into_either_side_and_exits_9(
    pg: PgDatabase, tmp_path: Path
) -> None:
    settings = demo_settings(pg)
    demo_platform(pg, settings)
    with running_daemon(settings):
        run_workload(pg.dsn, transactions=150, clients=2, rng_seed=4)
        caught_up(settings)
        # 1. a legacy audit row disappears: its record has no counterpart
        pg.execute(
            "DELETE FROM public.audit_log WHERE id = (SELECT min(id) FROM public.audit_log"
            " WHERE table_name = 'investors' AND operation = 'INSERT')"
        )
        # 2. and 3. records are altered and removed (append-only triggers bypassed)
        with pg.connect() as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute(
                "UPDATE activity.records"
                " SET new = jsonb_set(new::jsonb, '{legal_name}', '\"Mallory\"')"
                " WHERE (commit_lsn, seq) = (SELECT commit_lsn, seq FROM activity.records"
                " WHERE table_name = 'organizations' AND operation = 'insert'"
                " ORDER BY commit_lsn, seq LIMIT 1)"
            )
            conn.execute(
                "DELETE FROM activity.records WHERE (commit_lsn, seq) = (SELECT commit_lsn, seq"
                " FROM activity.records WHERE table_name = 'wallets' AND operation = 'insert'"
                " ORDER BY commit_lsn, seq LIMIT 1)"
            )
        report = verify(settings, wait_seconds=60)
        code, out = cdc(write_demo_config(tmp_path / "cdc.toml", pg), "verify")

    failing = {t.table[1]: t for t in report.tables if not t.ok}
    assert set(failing) == {"investors", "organizations", "wallets"}
    investors, organizations, wallets = (
        failing["investors"],
        failing["organizations"],
        failing["wallets"],
    )
    assert (investors.missing_in_legacy, investors.missing_in_cdc) == (1, 0)
    assert [d.kind for d in investors.differences] == ["missing_in_legacy"]
    assert organizations.value_differences == 1
    (changed,) = organizations.differences
    assert (changed.image, changed.column, changed.cdc) == ("new", "legal_name", "Mallory")
    assert changed.legacy != "Mallory"
    assert (wallets.missing_in_cdc, wallets.missing_in_legacy) == (1, 0)
    assert code == 9
    assert "public.organizations: xid" in out and "new.legal_name: legacy" in out
    assert "error: verify" in out
    assert "differences in public.organizations, public.investors, public.wallets" in out


ACCOUNTS = """
CREATE TABLE public.audit_log (
    id bigserial PRIMARY KEY, table_name text, operation text,
    txid bigint DEFAULT txid_current(), old_data jsonb, new_data jsonb,
    changed_at timestamptz DEFAULT now()
);
CREATE TABLE public.accounts (
    id int PRIMARY KEY, email text, password_hash text, total numeric(12, 2),
    doubled numeric GENERATED ALWAYS AS (total * 2) STORED,
    seen_at timestamptz
);
CREATE FUNCTION public.audit_row_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.audit_log (table_name, operation, old_data, new_data)
    VALUES (TG_TABLE_NAME, TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    RETURN NULL;
END $$;
CREATE TRIGGER audit_accounts AFTER INSERT OR UPDATE OR DELETE ON public.accounts
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
"""


def test_verify_skips_redacted_and_generated_columns_and_counts_ignored_updates(
    pg: PgDatabase,
) -> None:
    pg.execute(ACCOUNTS)
    settings = make_settings(pg, [{"name": "public.accounts", "ignore_columns": ["seen_at"]}])
    setup(settings)
    with running_daemon(settings):
        pg.execute("INSERT INTO public.accounts VALUES (1, 'a@x', 'hash1', 10.50)")
        pg.execute("UPDATE public.accounts SET total = 11, password_hash = 'hash2', email = 'b@x'")
        pg.execute("UPDATE public.accounts SET seen_at = now()")  # ignored: no record
        pg.execute("DELETE FROM public.accounts")
        report = verify(settings, wait_seconds=60)

    (accounts,) = report.tables
    assert report.ok, report.as_json()
    assert (accounts.matched, accounts.ignored, accounts.derived) == (3, 1, 0)
    record = pg.execute("SELECT new FROM activity.records WHERE operation = 'insert'")[0][0]
    assert record["password_hash"] == "[redacted]"
    # 18 publishes stored generated columns (setup asks it to); before 18 pgoutput sends none
    generated = int(pg.execute("SHOW server_version_num")[0][0]) >= 180000
    assert ("doubled" in record) == generated


def test_verify_counts_changes_after_a_cutover_as_live_and_reports_audit_rows_after_it(
    pg: PgDatabase,
) -> None:
    pg.execute(ACCOUNTS)
    pg.execute("CREATE TABLE public.plain (id int PRIMARY KEY)")  # never had audit triggers
    settings = make_settings(pg, [{"name": "public.accounts"}, {"name": "public.plain"}])
    setup(settings)
    take_backup(settings)
    with running_daemon(settings):
        pg.execute("INSERT INTO public.accounts VALUES (1, 'a@x', 'h', 1)")
        pg.execute("INSERT INTO public.plain VALUES (1)")
        caught_up(settings)  # the daemon acknowledged: cutover may go ahead
        cutover(settings, [("public", "accounts")])
        pg.execute("INSERT INTO public.accounts VALUES (2, 'b@x', 'h', 2)")
        clean = verify(settings, wait_seconds=60)
        # someone enables the audit trigger again behind the migration's back
        pg.execute("ALTER TABLE public.accounts ENABLE TRIGGER audit_accounts")
        pg.execute("INSERT INTO public.accounts VALUES (3, 'c@x', 'h', 3)")
        twice = verify(settings, wait_seconds=60)

    accounts, plain = clean.tables
    assert clean.ok, clean.as_json()
    assert (accounts.matched, accounts.live, accounts.missing_in_legacy) == (1, 1, 0)
    assert plain.skipped == "no audit triggers and no cutover" and plain.matched == 0
    accounts, _plain = twice.tables
    assert not twice.ok
    assert (accounts.after_cutover, accounts.live) == (1, 2)
    (difference,) = accounts.differences
    assert difference.kind == "after_cutover" and difference.key == (3,)
    assert "recorded twice" in difference.describe()


def test_verify_refuses_to_compare_records_the_daemon_has_not_confirmed(pg: PgDatabase) -> None:
    settings = demo_settings(pg)
    demo_platform(pg, settings)
    run_workload(pg.dsn, transactions=5, rng_seed=1)  # nobody records these yet

    with pytest.raises(LagExceeded, match="has not confirmed the stream up to"):
        verify(settings, wait_seconds=0)


# -------------------------------------------------------------------------------------------------
# Cutover and rollback under load
# -------------------------------------------------------------------------------------------------

# Busy tables of the workload; the rest stay on their triggers throughout.
PHASE_1 = ["subscriptions", "approvals", "notifications", "compliance_checks", "token_transfers"]
ROLLED_BACK = ["approvals", "notifications"]


def wait_for_more_audit_rows(pg: PgDatabase, more: int) -> None:
    start = pg.execute("SELECT count(*) FROM public.audit_log")[0][0]
    deadline = time.monotonic() + 120  # a guard against a stalled workload, not a measurement
    while pg.execute("SELECT count(*) FROM public.audit_log")[0][0] < start + more:
        assert time.monotonic() < deadline, "the workload stopped writing"
        time.sleep(0.05)


def through_cutover_and_rollback(
    pg: PgDatabase, phase: list[str], rolled_back: list[str]
) -> tuple[Settings, GroundTruth]:
    """Four clients write while ``phase`` is cut over to CDC and ``rolled_back`` is switched
    back; returns when the daemon has recorded everything they committed."""
    tables = [{"name": f"public.{t}"} for t in PLATFORM_TABLES]  # no ignored columns: every
    settings = make_settings(  # row change makes a record
        pg, tables, migration={"phases": {"1": [f"public.{t}" for t in phase]}}
    )
    with pg.connect() as conn:
        load_platform_schema(conn, legacy_triggers=True)
    setup(settings)
    take_backup(settings)
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def write() -> None:
        try:
            outcome["truth"] = run_workload(pg.dsn, clients=4, stop=stop, rng_seed=11)
        except BaseException as exc:
            outcome["error"] = exc

    with running_daemon(settings):
        writers = threading.Thread(target=write, name="workload")
        writers.start()
        try:
            wait_for_more_audit_rows(pg, 300)
            cutover(settings, [("public", t) for t in phase], phase=1)
            wait_for_more_audit_rows(pg, 300)
            rollback(settings, [("public", t) for t in rolled_back])
            wait_for_more_audit_rows(pg, 300)
        finally:
            stop.set()
            writers.join(timeout=120)
        caught_up(settings)
    assert "error" not in outcome, outcome.get("error")
    truth: GroundTruth = outcome["truth"]
    assert truth.exact and not truth.errors and truth.committed > 100
    return settings, truth


def modes_at(pg: PgDatabase) -> dict[str, list[tuple[int, str]]]:
    """Per table, its switches in stream order: (marker LSN, mode from there on)."""
    switches: dict[str, list[tuple[int, str]]] = {}
    for table, mode, lsn in pg.execute(
        "SELECT table_name, mode, marker_lsn::text FROM activity.trigger_switches ORDER BY id"
    ):
        switches.setdefault(table, []).append((Lsn.parse(lsn), mode))
    return switches


def mode_at(switches: dict[str, list[tuple[int, str]]], table: str, commit_lsn: int) -> str:
    mode = "triggers"
    for marker_lsn, to in switches.get(table, []):
        if marker_lsn < commit_lsn:
            mode = to
    return mode


def test_every_change_is_recorded_exactly_once_across_a_cutover_and_a_rollback_under_load(
    pg: PgDatabase,
) -> None:
    """From the stream alone (the daemon records every change; the markers split them)."""
    _settings, truth = through_cutover_and_rollback(pg, PHASE_1, ROLLED_BACK)

    switches = modes_at(pg)
    last_switch = {table: marks[-1] for table, marks in switches.items()}
    recorded_by_cdc: Counter[tuple[str, str]] = Counter()
    shadowed: Counter[tuple[int, str, str]] = Counter()
    cdc_transactions: set[tuple[int, str]] = set()
    after_rollback = 0  # changes of rolled-back tables the triggers logged again
    for table, operation, xid, lsn in pg.execute(
        "SELECT table_name, operation, xid, commit_lsn::text FROM activity.records"
        " WHERE operation IN ('insert', 'update', 'delete')"
    ):
        commit_lsn = Lsn.parse(lsn)
        if mode_at(switches, table, commit_lsn) == "cdc":
            recorded_by_cdc[(table, operation)] += 1
            cdc_transactions.add((xid, table))
        else:
            shadowed[(xid, table, operation)] += 1
            if table in ROLLED_BACK and commit_lsn > last_switch[table][0]:
                after_rollback += 1
    legacy: Counter[tuple[int, str, str]] = Counter()
    for xid, table, operation, n in pg.execute(
        "SELECT mod(txid, 4294967296), table_name, lower(operation), count(*)"
        " FROM public.audit_log WHERE operation IN ('INSERT', 'UPDATE', 'DELETE')"
        " GROUP BY 1, 2, 3"
    ):
        legacy[(int(xid), table, operation)] = n

    # no gap, no duplicate: the audit log before each marker plus CDC after it is everything
    assert legacy_row_changes(pg) + recorded_by_cdc == truth.counts
    # and change by change: what the triggers logged is what CDC saw before the marker ...
    assert legacy == shadowed
    # ... and no transaction after a table's marker wrote an audit row for it
    assert not cdc_transactions & {(xid, table) for xid, table, _op in legacy}
    # the switches happened under load: both sides recorded changes of the switched tables
    assert [last_switch[t][1] for t in PHASE_1] == [
        "triggers" if t in ROLLED_BACK else "cdc" for t in PHASE_1
    ]
    assert all(any(k[0] == t for k in recorded_by_cdc) for t in PHASE_1)
    assert after_rollback > 0


def test_the_daemon_records_shadow_before_each_marker_and_live_activity_after_it(
    pg: PgDatabase,
) -> None:
    """The daemon's side of the contract: it applies each cdc.cutover marker where it is in
    the stream (a migration record with the marker, the table's capture mode, and from there
    on the table's records as live activity or as shadow records)."""
    _settings, truth = through_cutover_and_rollback(
        pg, ["notifications", "approvals"], ["approvals"]
    )

    by_source: dict[str, Counter[tuple[str, str]]] = {}
    for source, table, operation, n in pg.execute(
        "SELECT source, table_name, operation, count(*) FROM activity.records GROUP BY 1, 2, 3"
    ):
        by_source.setdefault(source, Counter())[(table, operation)] = n
    markers = pg.execute(
        "SELECT schema_name, table_name, mode, marker FROM activity.trigger_switches ORDER BY id"
    )
    migration = pg.execute(
        "SELECT schema_name, table_name, operation, action, context FROM activity.records"
        " WHERE source = 'migration' ORDER BY commit_lsn, seq"
    )
    assert migration == [
        (
            schema,
            table,
            "message",
            "migration.cutover" if mode == "cdc" else "migration.rollback",
            marker,
        )
        for schema, table, mode, marker in markers
    ]
    modes = dict(
        ((s, t), m)
        for s, t, m in pg.execute(
            "SELECT schema_name, table_name, mode FROM activity.capture_modes"
        )
    )
    assert modes.get(("public", "notifications")) == "cdc"
    assert modes.get(("public", "approvals")) == "shadow"
    # the legacy log before each marker + live records after it: every change, once
    assert legacy_row_changes(pg) + by_source.get("database", Counter()) == truth.counts
    # and the shadow records are exactly what the legacy triggers logged
    assert by_source.get("shadow", Counter()) == legacy_row_changes(pg)
