"""The ``cdc`` commands on a real PostgreSQL: output, exit codes, and every documented failure
as one line with what to do next (never a traceback)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from cdc.cli.main import main
from cdc.demo.embedded import EmbeddedPostgres, version_of, wheel_bindirs
from cdc.errors import PublicationNotFound
from cdc.lsn import Lsn
from cdc.pipeline.publication_guard import PublicationGuard
from cdc.service.daemon import Daemon
from tests.fix_pg import PgDatabase
from tests.integration.helpers import make_settings, run_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.every_server]

REPO = Path(__file__).resolve().parents[2]
SECRET = "hunter2-never-log-me"


def write_config(path: Path, pg: PgDatabase, *, dsn: str | None = None, extra: str = "") -> Path:
    path.write_text(
        f"[source]\ndsn = '{dsn or pg.dsn}'\nslot = '{pg.slot}'\n"
        f"publication = '{pg.publication}'\n[batch]\nmax_rows = 100\nmax_delay_ms = 20\n"
        f"[[tables]]\nname = 'public.t'\nentity_type = 'thing'\n{extra}"
    )
    return path


def cdc(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def config(pg: PgDatabase, tmp_path: Path) -> Path:
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    # trust authentication ignores the password: it is there to prove it is never shown
    return write_config(tmp_path / "cdc.toml", pg, dsn=f"{pg.dsn} password={SECRET}")


def test_setup_is_idempotent_and_says_what_it_did(config: Path) -> None:
    code, out = cdc(config, "setup")
    assert code == 0
    assert "created publication" in out and "created logical replication slot" in out
    code, out = cdc(config, "setup")
    assert code == 0
    assert "nothing to do" in out
    assert SECRET not in out


def test_run_drain_records_everything_committed_before_it_and_exits_zero(
    pg: PgDatabase, config: Path
) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 250) g")
    code, out = cdc(config, "--log-level", "debug", "run", "--drain")
    assert code == 0, out
    assert "250 records" in out
    assert SECRET not in out
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 250


def test_lag_reports_bytes_and_time_and_exits_three_over_a_threshold(
    pg: PgDatabase, config: Path
) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 500) g")
    code, out = cdc(config, "lag", "--json")
    assert code == 0
    before = json.loads(out)
    assert before["slot"] == pg.slot and before["active"] is False
    assert before["unconfirmed_bytes"] > 50_000
    assert before["last_recorded_commit_at"] is None
    code, out = cdc(config, "lag", "--max-bytes", "1000")
    assert code == 3 and "lag over threshold" in out
    assert cdc(config, "run", "--drain")[0] == 0
    code, out = cdc(config, "lag", "--json", "--max-bytes", "100000000", "--max-seconds", "600")
    assert code == 0, out
    after = json.loads(out.splitlines()[0])
    # Everything written before the drain is acknowledged. (The sink's own writes to the
    # records table, in the same database, add WAL after the drain target.)
    assert Lsn.parse(after["confirmed_flush_lsn"]) >= Lsn.parse(before["current_lsn"])
    assert after["seconds_since_last_recorded_commit"] < 600
    code, out = cdc(config, "lag", "--max-seconds", "0")
    assert code == 3
    for negative in (["--max-bytes", "-1"], ["--max-seconds", "-5"]):
        code, out = cdc(config, "lag", *negative)
        assert code == 2 and "is not in the range" in out, out


def test_bad_config_is_one_line_naming_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[source]\ndsn = 'x'\n[batch]\nmax_rows = 0\n[[tables]]\nname = 'public.t'\n")
    code, out = cdc(path, "setup")
    assert code == 4
    assert str(path) in out and "batch.max_rows" in out
    assert len(out.strip().splitlines()) == 1


def test_missing_config_file_exits_four(tmp_path: Path) -> None:
    code, out = cdc(tmp_path / "nope.toml", "run")
    assert code == 4 and "config file not found" in out


def test_unknown_table_is_refused_before_anything_changes(pg: PgDatabase, config: Path) -> None:
    config.write_text(config.read_text() + "[[tables]]\nname = 'public.missing'\n")
    code, out = cdc(config, "setup")
    assert code == 4 and "public.missing" in out
    assert pg.execute("SELECT count(*) FROM pg_replication_slots")[0][0] == 0
    assert pg.execute("SELECT count(*) FROM pg_publication")[0][0] == 0


def test_unreachable_server_exits_five_without_the_password(pg: PgDatabase, tmp_path: Path) -> None:
    dsn = f"host=127.0.0.1 port=1 dbname=x user=u password={SECRET} connect_timeout=2"
    config = write_config(tmp_path / "cdc.toml", pg, dsn=dsn)
    for command in (["setup"], ["run", "--drain"], ["lag"]):
        code, out = cdc(config, *command)
        assert code == 5, (command, out)
        assert "cannot connect" in out and "127.0.0.1:1" in out
        assert SECRET not in out


def test_wal_level_not_logical_exits_five_with_the_fix(tmp_path: Path) -> None:
    with EmbeddedPostgres(settings={"wal_level": "replica"}) as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        path = tmp_path / "cdc.toml"
        path.write_text(f"[source]\ndsn = '{server.dsn}'\n[[tables]]\nname = 'public.t'\n")
        for command in (["setup"], ["run"]):
            code, out = cdc(path, *command)
            assert code == 5, out
            assert "wal_level is 'replica'" in out and "wal_level = logical" in out


def test_run_without_setup_says_to_run_setup(pg: PgDatabase, config: Path) -> None:
    code, out = cdc(config, "run", "--drain")
    assert code == 6
    assert f'slot "{pg.slot}" does not exist' in out and "cdc setup" in out


def test_dropped_publication_exits_six(pg: PgDatabase, config: Path) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute(f'DROP PUBLICATION "{pg.publication}"')
    code, out = cdc(config, "run", "--drain")
    assert code == 6 and "publication" in out and "cdc setup" in out


def test_check_says_the_publication_is_missing(pg: PgDatabase, config: Path) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute(f'DROP PUBLICATION "{pg.publication}"')
    code, out = cdc(config, "check")
    assert code == 6
    assert f"{pg.publication} does not exist; run cdc setup" in out


def test_slot_in_use_by_another_process_exits_six(pg: PgDatabase, config: Path) -> None:
    assert cdc(config, "setup")[0] == 0
    holder = psycopg.connect(pg.dsn, replication="database", autocommit=True)
    try:
        holder.execute(
            f"START_REPLICATION SLOT \"{pg.slot}\" LOGICAL 0/0 (proto_version '1', "
            f"publication_names '\"{pg.publication}\"')"
        )
        code, out = cdc(config, "run", "--drain")
        assert code == 6
        assert "is active for PID" in out and "another process" in out
        assert out.rstrip().endswith(
            "run this daemon as a standby that waits for the slot: cdc run without --drain "
            "waits while the slot is busy and takes over when it is free"
        )
    finally:
        holder.close()


def test_a_standby_on_the_same_host_shares_the_busy_slot_and_metrics_port_without_exiting(
    pg: PgDatabase, config: Path, tmp_path: Path
) -> None:
    """deploy/README.md: a second `cdc run` on a busy slot waits as a standby, and a metrics
    port held by the first one is retried, not a configuration error (exit 4)."""
    assert cdc(config, "setup")[0] == 0
    holder = psycopg.connect(pg.dsn, replication="database", autocommit=True)
    port_holder = socket.socket()
    port_holder.bind(("127.0.0.1", 0))
    port_holder.listen()
    port = port_holder.getsockname()[1]
    config.write_text(config.read_text() + f"[metrics]\nport = {port}\n")
    log = tmp_path / "standby.log"
    try:
        holder.execute(
            f"START_REPLICATION SLOT \"{pg.slot}\" LOGICAL 0/0 (proto_version '1', "
            f"publication_names '\"{pg.publication}\"')"
        )
        with log.open("w") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cdc", "--config", str(config), "run"],
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=sink,
                stderr=sink,
                text=True,
            )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                text = log.read_text()
                if "standby: slot" in text and f"metrics port 127.0.0.1:{port} is in use" in text:
                    break
                time.sleep(0.2)
            assert proc.poll() is None, log.read_text()  # still running: a standby
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        port_holder.close()
        holder.close()
    text = log.read_text()
    assert "standby: slot" in text and f"metrics port 127.0.0.1:{port} is in use" in text
    assert SECRET not in text


def test_server_error_mid_stream_becomes_a_typed_error(pg: PgDatabase) -> None:
    """The publication disappears while the daemon streams: PostgreSQL 15-17 report it at the
    next change, inside the COPY stream; 18 only logs a warning and skips the change, and the
    daemon's publication check before it acknowledges finds it gone."""
    pg.execute("CREATE TABLE t (id int PRIMARY KEY)")
    settings = make_settings(pg, [{"name": "public.t"}])
    from cdc.control.setup import setup

    setup(settings)
    daemon = Daemon(settings)
    thread, errors = run_in_thread(daemon)
    try:
        _wait_active(pg)
        pg.execute(f'DROP PUBLICATION "{pg.publication}"')
        pg.execute("INSERT INTO t VALUES (1)")
        thread.join(timeout=30)
        stopped_by_itself = not thread.is_alive()
    finally:
        daemon.request_stop()
        thread.join(timeout=30)
        daemon.close()
    assert len(errors) == 1 and isinstance(errors[0], PublicationNotFound), errors
    assert "cdc setup" in str(errors[0])
    assert stopped_by_itself


def test_publication_created_again_mid_stream_stops_before_acknowledging_the_gap(
    pg: PgDatabase,
) -> None:
    """Dropped and created again while the daemon streams: the change made in between was
    not published (15-17 stop on it; 18 skips it with a warning), so the daemon stops with
    PublicationNotFound and the slot is not acknowledged past the drop."""
    pg.execute("CREATE TABLE t (id int PRIMARY KEY)")
    settings = make_settings(pg, [{"name": "public.t"}])
    from cdc.control.setup import setup

    setup(settings)
    daemon = Daemon(settings)
    thread, errors = run_in_thread(daemon)
    try:
        _wait_active(pg)
        before_drop = Lsn.parse(pg.execute("SELECT pg_current_wal_lsn()::text")[0][0])
        pg.execute(f'DROP PUBLICATION "{pg.publication}"')
        pg.execute("INSERT INTO t VALUES (1)")
        setup(settings)  # the publication again, with a new OID
        pg.execute("INSERT INTO t VALUES (2)")
        thread.join(timeout=30)
        stopped_by_itself = not thread.is_alive()
    finally:
        daemon.request_stop()
        thread.join(timeout=30)
        daemon.close()
    assert len(errors) == 1 and isinstance(errors[0], PublicationNotFound), errors
    assert "cdc setup" in str(errors[0])
    assert stopped_by_itself
    confirmed = pg.execute(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
        (pg.slot,),
    )[0][0]
    assert Lsn.parse(confirmed) <= before_drop


def test_a_daemon_that_expects_the_publication_finds_it_created_again(pg: PgDatabase) -> None:
    """What the supervisor's next attempt does after a lost connection: it expects the OID
    the first attempt found, so a publication dropped and created again meanwhile stops it."""
    pg.execute("CREATE TABLE t (id int PRIMARY KEY)")
    settings = make_settings(pg, [{"name": "public.t"}])
    from cdc.control.setup import setup

    setup(settings)
    query = "SELECT oid::bigint FROM pg_publication WHERE pubname = %s"
    first = int(pg.execute(query, (pg.publication,))[0][0])
    pg.execute(f'DROP PUBLICATION "{pg.publication}"')
    setup(settings)
    daemon = Daemon(settings, drain=True)
    daemon.publication_oid = first
    try:
        with pytest.raises(PublicationNotFound, match="created again"):
            daemon.run()
    finally:
        daemon.close()


def test_publication_guard_allows_only_what_was_received_before_a_check(
    pg: PgDatabase,
) -> None:
    """Between checks (at most one a second) the acknowledgement stops at what was received
    before the last one; a publication created again has a new OID, and the check says so."""
    pg.execute(f'CREATE PUBLICATION "{pg.publication}"')
    clock = [100.0]
    guard = PublicationGuard(pg.dsn, pg.publication, clock=lambda: clock[0])
    try:
        guard.start()
        assert guard.allowed(50, received_lsn=80) == 50  # checked: 80 is verified
        assert guard.allowed(120, received_lsn=200) == 80  # not due: what came before
        clock[0] += 1.0
        assert guard.allowed(120, received_lsn=200) == 120
        pg.execute(f'DROP PUBLICATION "{pg.publication}"')
        pg.execute(f'CREATE PUBLICATION "{pg.publication}"')
        assert guard.allowed(150, received_lsn=300) == 150  # verified at 200
        with pytest.raises(PublicationNotFound, match="created again"):
            guard.allowed(250, received_lsn=300, force=True)
        pg.execute(f'DROP PUBLICATION "{pg.publication}"')
        with pytest.raises(PublicationNotFound, match='does not exist on the source; run "cdc'):
            guard.allowed(250, received_lsn=300, force=True)
    finally:
        guard.close()


def _wait_active(pg: PgDatabase) -> None:
    for _ in range(200):
        if pg.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (pg.slot,))[
            0
        ][0]:
            return
        time.sleep(0.05)
    raise AssertionError("daemon never started streaming")


def test_sigterm_finishes_the_batch_acknowledges_and_exits_zero(
    pg: PgDatabase, config: Path, tmp_path: Path
) -> None:
    assert cdc(config, "setup")[0] == 0
    config.write_text(
        config.read_text().replace(
            "max_delay_ms = 20", "max_delay_ms = 60000\nflush_when_idle = false"
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc", "--config", str(config), "run"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_active(pg)
        pg.execute("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 30) g")
        time.sleep(1.0)  # received, but the 60 s batch delay has not passed: nothing written
        assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 0
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert SECRET not in err
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 30
    (acknowledged,) = pg.execute(
        "SELECT s.confirmed_flush_lsn >= c.end_lsn FROM pg_replication_slots s "
        "JOIN activity.checkpoints c ON c.slot_name = s.slot_name"
    )[0]
    assert acknowledged


def test_sink_in_another_database_receives_the_records(pg: PgDatabase, tmp_path: Path) -> None:
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    sink_name = f"{pg.name}_sink"
    with psycopg.connect(pg.server.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{sink_name}"')
    try:
        sink_dsn = pg.server.dsn_for(sink_name)
        config = write_config(tmp_path / "cdc.toml", pg, extra="")
        config.write_text(config.read_text() + f"[sink]\ndsn = '{sink_dsn}'\n")
        assert cdc(config, "setup")[0] == 0
        pg.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        assert cdc(config, "run", "--drain")[0] == 0
        with psycopg.connect(sink_dsn) as sink:
            assert sink.execute("SELECT count(*) FROM activity.records").fetchone() == (2,)
        assert pg.execute("SELECT to_regclass('activity.records')")[0][0] is None
    finally:
        with psycopg.connect(pg.server.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{sink_name}" WITH (FORCE)')


def test_demo_runs_on_the_server_that_cdc_pg_bindir_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """CDC_PG_BINDIR points the demo (and the benchmark: both start cdc.demo.embedded) at any
    server: here the newest server wheel, where setup makes a failover slot (17+)."""
    newest = max(wheel_bindirs(), key=lambda bindir: int(version_of(bindir)))
    assert int(version_of(newest)) >= 17
    monkeypatch.setenv("CDC_PG_BINDIR", str(newest))
    result = CliRunner().invoke(main, ["demo", "--seconds", "2", "--clients", "1"])
    assert result.exit_code == 0, result.output
    assert "created logical replication slot activity_cdc (pgoutput, failover)" in result.output
    assert "recorded and acknowledged everything" in result.output
    assert "chain intact" in result.output


def test_demo_runs_end_to_end_and_shows_records() -> None:
    result = CliRunner().invoke(main, ["demo", "--seconds", "2", "--clients", "1"])
    assert result.exit_code == 0, result.output
    assert "created logical replication slot" in result.output
    assert "recorded and acknowledged everything" in result.output
    assert "activity records:" in result.output
    assert "removed the throwaway PostgreSQL" in result.output
    assert "cdc demo --serve, then open http://127.0.0.1:8080/monitor" in result.output
    assert "chain intact" in result.output


def test_a_connection_lost_under_a_command_is_one_line_and_exit_five_not_an_internal_error(
    pg: PgDatabase,
) -> None:
    """The server ends the session while a command runs (a restart, a failover) and the
    command has no handler of its own for it: one line that says so, the ConnectError exit
    code (5), no "please report it". Other driver errors stay internal errors (exit 1)."""
    import click

    from cdc.cli.main import handles_errors

    @click.command()
    @click.argument("statement")
    @handles_errors
    def run_sql(statement: str) -> None:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(statement)

    runner = CliRunner()
    lost = runner.invoke(run_sql, ["SELECT pg_terminate_backend(pg_backend_pid())"])
    assert lost.exit_code == 5
    assert lost.output.count("\n") == 1 and lost.output.startswith(
        "error: lost the connection to the database: terminating connection due to "
        "administrator command; the command stopped there: run it again"
    ), lost.output
    broken = runner.invoke(run_sql, ["SELECT 1/0"])
    assert broken.exit_code == 1 and "unexpected internal error" in broken.output
