"""The JetStream sink and ``cdc ingest`` on a real PostgreSQL and a real 3-node NATS cluster:
setup, fidelity through the stream, exactly once across crashes, a cluster that is down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cdc.cli.main import main
from cdc.config import Settings
from cdc.demo.embedded import EmbeddedPostgres
from cdc.demo.embedded_nats import NatsCluster
from cdc.pipeline.jetstream_broker import apply_broker, plan_broker
from cdc.service.ingest import Ingest, IngestOptions
from cdc.store.chain import verify_chain
from tests.fix_nats import JetStreamNames
from tests.fix_pg import PgDatabase, PgServer, drop_database
from tests.integration.helpers import drain, make_settings, setup_and_settings

pytestmark = [pytest.mark.integration, pytest.mark.jetstream]

DDL = """
CREATE TABLE public.accounts (
    id bigint PRIMARY KEY,
    email text NOT NULL,
    balance numeric(38, 18) NOT NULL DEFAULT 0,
    profile jsonb,
    note text,
    password_hash text,
    updated_by bigint
);
CREATE TABLE "odd schema"."odd.table" (id int PRIMARY KEY, v text);
"""
TABLES: list[dict[str, Any]] = [
    {"name": "public.accounts", "entity_type": "account", "actor_columns": ["updated_by"]},
    {"name": '"odd schema"."odd.table"'},
]

# Every column the records of the store hold, but the ones the store sets itself.
STORE_QUERY = """
SELECT occurred_at, source, operation, action, category, severity, schema_name, table_name,
       entity_type, entity_id, actor_id, context::text, old::text, new::text, changes::text,
       summary, xid, commit_lsn::text, seq
  FROM activity.records ORDER BY commit_lsn, seq
"""


@contextlib.contextmanager
def store_database(server: PgServer) -> Iterator[str]:
    """A fresh empty database for a store that ``cdc ingest`` fills."""
    name = f"cdc_store_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.dsn_for(name)
    finally:
        drop_database(server, name)


def store_rows(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(STORE_QUERY).fetchall()


def jetstream_settings(
    pg: PgDatabase,
    cluster: NatsCluster,
    names: JetStreamNames,
    *,
    slot: str | None = None,
    **sink: Any,
) -> Settings:
    settings = make_settings(pg, TABLES, sink=names.sink_section(cluster, **sink))
    if slot is not None:
        source = settings.source.model_copy(update={"slot": slot})
        settings = settings.model_copy(update={"source": source})
    return settings


def stream_messages(cluster: NatsCluster, stream: str) -> list[tuple[str, str]]:
    """(Nats-Msg-Id, subject) of every message the stream holds, in stream order."""

    async def read() -> list[tuple[str, str]]:
        nc = await nats.connect(cluster.urls)
        try:
            js = nc.jetstream(timeout=10)
            info = await js.stream_info(stream)
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                assert msg.headers is not None
                found.append((msg.headers["Nats-Msg-Id"], msg.subject))
            return found
        finally:
            await nc.close()

    return asyncio.run(read())


def ingest(settings: Settings, store_dsn: str, **options: Any) -> Any:
    return Ingest(settings, IngestOptions(store_dsn=store_dsn, drain=True, **options)).run()


def workload(pg: PgDatabase) -> None:
    with pg.connect() as conn:
        conn.execute(
            "INSERT INTO accounts (id, email, balance, profile, note, password_hash) VALUES "
            "(1, 'a@example.com', 1.50, '{\"tier\": \"gold\", \"n\": 1.10}', e'tab\\there\\nnl',"
            " 'secret'), (2, 'ü@example.com', 123456789012345678.123456789012345678, NULL,"
            " '\"quoted\" \\\\ backslash', NULL)"
        )
        conn.execute("UPDATE accounts SET balance = 2.000, updated_by = 7 WHERE id = 1")
        conn.execute("DELETE FROM accounts WHERE id = 2")
        conn.execute("""INSERT INTO "odd schema"."odd.table" VALUES (1, 'x y')""")
        with conn.transaction():
            conn.execute(
                "INSERT INTO accounts (id, email) SELECT g, 'bulk' || g FROM "
                "generate_series(10, 1200) g"
            )


def test_setup_creates_the_stream_and_bucket_once_and_dry_run_changes_nothing(
    nats_cluster: NatsCluster, jetstream_names: JetStreamNames, source: PgDatabase, tmp_path: Path
) -> None:
    pg = source
    pg.execute(DDL)
    settings = jetstream_settings(pg, nats_cluster, jetstream_names)
    plan = plan_broker(settings.sink)
    assert [step.kind for step in plan.steps] == ["create_stream", "create_bucket"]
    config = tmp_path / "cdc.toml"
    config.write_text(_toml(pg, nats_cluster, jetstream_names))
    dry = CliRunner().invoke(main, ["--config", str(config), "setup", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f'"name": "{jetstream_names.stream}"' in dry.output
    assert '"num_replicas": 3' in dry.output
    assert [step.kind for step in plan_broker(settings.sink).steps] == [
        "create_stream",
        "create_bucket",
    ]  # the dry run created nothing
    first = CliRunner().invoke(main, ["--config", str(config), "setup"])
    assert first.exit_code == 0, first.output
    assert f"done: created stream {jetstream_names.stream}" in first.output
    again = CliRunner().invoke(main, ["--config", str(config), "setup"])
    assert again.exit_code == 0, again.output
    assert f"ok:   stream {jetstream_names.stream} is as configured" in again.output
    assert "done: created" not in again.output
    # A changed setting is brought back to the config by the next setup.
    changed = settings.sink.model_copy(update={"duplicate_window_s": 60})
    plan, done = apply_broker(changed)
    assert done == [f"updated stream {jetstream_names.stream} (duplicate window)"]


def _toml(pg: PgDatabase, cluster: NatsCluster, names: JetStreamNames) -> str:
    servers = ", ".join(f'"{url}"' for url in cluster.urls)
    return f"""
[source]
dsn = "{pg.dsn}"
slot = "{pg.slot}"
publication = "{pg.publication}"

[sink]
kind = "jetstream"
servers = [{servers}]
stream = "{names.stream}"
subject_prefix = "{names.subject_prefix}"
bucket = "{names.bucket}"

[[tables]]
name = "public.accounts"

[[tables]]
name = '"odd schema"."odd.table"'
"""


@pytest.fixture
def source(pg: PgDatabase) -> PgDatabase:
    pg.execute('CREATE SCHEMA "odd schema"')
    return pg


def test_records_through_the_stream_equal_what_the_postgres_sink_writes(
    nats_cluster: NatsCluster, jetstream_names: JetStreamNames, source: PgDatabase
) -> None:
    pg = source
    # Two slots on one source: one feeds the PostgreSQL sink, the other the stream.
    direct = setup_and_settings(pg, DDL, TABLES)
    via = jetstream_settings(pg, nats_cluster, jetstream_names, slot=f"{pg.slot}_js")
    from cdc.control.setup import setup

    setup(via)
    apply_broker(via.sink)
    workload(pg)
    drain(direct)
    stats = drain(via)
    assert stats.records == 1196
    with store_database(pg.server) as store:
        result = ingest(via, store, batch_max=300)
        assert result.records == 1196 and result.already_stored == 0
        assert store_rows(store) == store_rows(pg.dsn)
        with psycopg.connect(store, autocommit=True) as conn:  # ingest chains what it writes
            chain = verify_chain(conn, "activity", "records")
        assert chain.problem is None and chain.checked == 1196, chain.problem
    messages = stream_messages(nats_cluster, jetstream_names.stream)
    assert len(messages) == 1196 == len({msg_id for msg_id, _ in messages})
    subjects = {subject for _, subject in messages}
    prefix = f"{jetstream_names.subject_prefix}.{pg.name}"
    assert subjects == {
        f"{prefix}.public.accounts.insert",
        f"{prefix}.public.accounts.update",
        f"{prefix}.public.accounts.delete",
        f"{prefix}.odd%20schema.odd%2Etable.insert",
    }


def test_an_ingest_started_before_its_store_is_up_waits_for_it_and_stores_all_once(
    nats_cluster: NatsCluster, jetstream_names: JetStreamNames, source: PgDatabase
) -> None:
    """The store not up yet (or restarting) when ``cdc ingest`` starts: its set-up is retried
    with the reconnect backoff, like any lost connection, and the stream keeps the messages."""
    pg = source
    pg.execute(DDL)
    via = jetstream_settings(pg, nats_cluster, jetstream_names)
    via = via.model_copy(update={"daemon": via.daemon.model_copy(update={"reconnect_max_s": 0.5})})
    from cdc.control.setup import setup

    setup(via)
    apply_broker(via.sink)
    workload(pg)
    assert drain(via).records == 1196
    store = EmbeddedPostgres()  # its port is chosen; nothing listens there yet
    worker = Ingest(via, IngestOptions(store_dsn=store.dsn, drain=True, batch_max=300))
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(worker.run()))
    thread.start()
    try:
        _wait_for(lambda: worker.reconnects >= 2 or not thread.is_alive(), "two tries", 60)
        assert thread.is_alive() and not results  # waiting, not failed
        store.start()
        thread.join(timeout=120)
        assert len(results) == 1 and results[0].records == 1196
        with psycopg.connect(store.dsn, autocommit=True) as conn:
            assert conn.execute(
                "SELECT count(DISTINCT (commit_lsn, seq)), count(*) FROM activity.records"
            ).fetchone() == (1196, 1196)
            chain = verify_chain(conn, "activity", "records")
        assert chain.problem is None and chain.checked == 1196, chain.problem
    finally:
        worker.request_stop()
        thread.join(timeout=60)
        store.stop()


def _run_cdc(config: Path, *args: str, env: dict[str, str] | None = None) -> int:
    return subprocess.run(
        [sys.executable, "-m", "cdc", "--config", str(config), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        timeout=300,
    ).returncode


def test_a_crash_after_the_pubacks_republishes_nothing_twice(
    nats_cluster: NatsCluster, jetstream_names: JetStreamNames, source: PgDatabase, tmp_path: Path
) -> None:
    """SIGKILL between the PubAcks and the checkpoint put (the stream's duplicate window drops
    the republished flush), and after the checkpoint put but before the acknowledgement to
    PostgreSQL with the window passed (the bucket's checkpoint skips it)."""
    pg = source
    pg.execute(DDL)
    config = tmp_path / "cdc.toml"
    config.write_text(_toml(pg, nats_cluster, jetstream_names) + "\n[batch]\nmax_rows = 200\n")
    assert _run_cdc(config, "setup") == 0
    workload(pg)
    killed = _run_cdc(
        config, "run", "--drain", env={"CDC_FAILPOINTS": "jetstream.before_checkpoint=3"}
    )
    assert killed == -9
    assert _run_cdc(config, "run", "--drain") == 0
    messages = stream_messages(nats_cluster, jetstream_names.stream)
    assert len(messages) == 1196 == len({msg_id for msg_id, _ in messages})


def test_a_restart_after_the_duplicate_window_skips_what_the_bucket_says_is_stored(
    nats_cluster: NatsCluster, jetstream_names: JetStreamNames, source: PgDatabase, tmp_path: Path
) -> None:
    # Killed after the checkpoint put of the 2nd flush, before PostgreSQL hears of it: the
    # slot sends it again, and the 3rd flush's chunks and more.
    messages = _killed_and_restarted_after_the_window(
        source, nats_cluster, jetstream_names, tmp_path, "jetstream.after_checkpoint=4"
    )
    assert len(messages) == 1196 == len({msg_id for msg_id, _ in messages})


def _killed_and_restarted_after_the_window(
    pg: PgDatabase, cluster: NatsCluster, names: JetStreamNames, tmp_path: Path, failpoint: str
) -> list[tuple[str, str]]:
    """The workload drained by a daemon killed at ``failpoint`` and, once the stream's 1 s
    duplicate window has passed, by a second one; what the stream then holds."""
    pg.execute(DDL)
    config = tmp_path / "cdc.toml"
    config.write_text(
        _toml(pg, cluster, names).replace('bucket = "', 'duplicate_window_s = 1\nbucket = "')
        + "\n[batch]\nmax_rows = 200\n"
    )
    assert _run_cdc(config, "setup") == 0
    workload(pg)
    assert _run_cdc(config, "run", "--drain", env={"CDC_FAILPOINTS": failpoint}) == -9
    time.sleep(2.5)  # the window is 1 s; JetStream forgets ids on its next sweep
    assert _run_cdc(config, "run", "--drain") == 0
    return stream_messages(cluster, names.stream)


def _slot_confirmed(pg: PgDatabase) -> str:
    ((confirmed,),) = pg.execute(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
        (pg.slot,),
    )
    return str(confirmed)


def _wait_for(predicate: Any, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.3)


def test_a_cluster_that_is_down_gets_nothing_acknowledged_and_check_and_lag_say_why(
    jetstream_names: JetStreamNames, source: PgDatabase, tmp_path: Path
) -> None:
    pg = source
    pg.execute(DDL)
    cluster = NatsCluster(1, name="cdc-down")
    cluster.start()
    try:
        config = tmp_path / "cdc.toml"
        config.write_text(
            _toml(pg, cluster, jetstream_names).replace('stream = "', 'replicas = 1\nstream = "')
            + "\n[daemon]\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n"
        )
        assert _run_cdc(config, "setup") == 0
        cluster.stop_node(0)
        before = _slot_confirmed(pg)
        workload(pg)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "cdc", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            check = CliRunner().invoke(main, ["--config", str(config), "check"])
            assert check.exit_code == 5
            assert "cannot connect to NATS" in check.output
            assert "acknowledges nothing" in check.output
            lag = CliRunner().invoke(main, ["--config", str(config), "lag", "--max-seconds", "60"])
            assert lag.exit_code == 3
            assert f"JetStream stream {jetstream_names.stream}: cannot connect" in lag.output
            assert daemon.poll() is None  # it retries
            assert _slot_confirmed(pg) == before  # nothing acknowledged: the WAL is retained
            cluster.start_node(0)
            _wait_for(
                lambda: len(stream_messages(cluster, jetstream_names.stream)) >= 1196,
                "the daemon to publish the backlog",
            )
            _wait_for(lambda: _slot_confirmed(pg) != before, "the acknowledgement")
        finally:
            daemon.terminate()
            _, stderr = daemon.communicate(timeout=60)
        assert daemon.returncode == 0, stderr.decode()[-2000:]
        assert b"Traceback" not in stderr
        messages = stream_messages(cluster, jetstream_names.stream)
        assert len(messages) == 1196 == len({msg_id for msg_id, _ in messages})
        lag = CliRunner().invoke(main, ["--config", str(config), "lag", "--json"])
        assert lag.exit_code == 0, lag.output
        assert '"messages": 1196' in lag.output
    finally:
        cluster.stop()


def test_a_flush_republished_after_the_duplicate_window_is_stored_once_by_two_ingests(
    nats_cluster: NatsCluster, jetstream_names: JetStreamNames, source: PgDatabase, tmp_path: Path
) -> None:
    """SIGKILL between the PubAcks and the bucket's checkpoint, restart after the duplicate
    window: the flush is published again and the stream holds it twice. Two ingest processes
    share the stream; the store holds each record once, with its source, chain intact."""
    pg = source
    messages = _killed_and_restarted_after_the_window(
        pg, nats_cluster, jetstream_names, tmp_path, "jetstream.before_checkpoint=3"
    )
    held_twice = len(messages) - len({msg_id for msg_id, _ in messages})
    assert held_twice > 0 and len({msg_id for msg_id, _ in messages}) == 1196
    settings = jetstream_settings(pg, nats_cluster, jetstream_names)
    with store_database(pg.server) as store:
        results: list[Any] = []
        workers = [
            threading.Thread(target=lambda: results.append(ingest(settings, store, batch_max=50)))
            for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=300)
        assert len(results) == 2
        assert sum(r.records for r in results) == 1196
        assert sum(r.duplicates for r in results) == held_twice
        with psycopg.connect(store, autocommit=True) as conn:
            ((system_id,),) = pg.execute("SELECT system_identifier::text FROM pg_control_system()")
            assert conn.execute(
                "SELECT source_id, count(*), count(DISTINCT (commit_lsn, seq)) "
                "FROM activity.records GROUP BY source_id"
            ).fetchall() == [(f"{system_id}:{pg.slot}", 1196, 1196)]
            chain = verify_chain(conn, "activity", "records")
        assert chain.problem is None and chain.checked == 1196, chain.problem


def test_two_sources_with_the_same_commit_lsns_meet_in_one_store(
    nats_cluster: NatsCluster, jetstream_names: JetStreamNames, source: PgDatabase
) -> None:
    """Two slots of one cluster publish the same commits (same commit LSN, seq and time): one
    store keeps both, told apart by their source."""
    pg = source
    pg.execute(DDL)
    first = jetstream_settings(pg, nats_cluster, jetstream_names)
    second = jetstream_settings(pg, nats_cluster, jetstream_names, slot=f"{pg.slot}_b")
    from cdc.control.setup import setup

    setup(first)
    setup(second)
    apply_broker(first.sink)
    workload(pg)
    assert drain(first).records == drain(second).records == 1196
    with store_database(pg.server) as store:
        assert ingest(first, store, batch_max=500).records == 2392
        ((system_id,),) = pg.execute("SELECT system_identifier::text FROM pg_control_system()")
        with psycopg.connect(store, autocommit=True) as conn:
            assert conn.execute(
                "SELECT source_id, count(*) FROM activity.records GROUP BY 1 ORDER BY 1"
            ).fetchall() == [(f"{system_id}:{pg.slot}", 1196), (f"{system_id}:{pg.slot}_b", 1196)]


def test_ingest_runs_under_its_least_privilege_role(
    nats_cluster: NatsCluster, jetstream_names: JetStreamNames, source: PgDatabase, tmp_path: Path
) -> None:
    """The store made (and migrated) by its owner; then ingest as the role that
    ``cdc setup --print-role-sql --ingest`` creates, which can write the store and no more."""
    pg = source
    pg.execute(DDL)
    settings = jetstream_settings(pg, nats_cluster, jetstream_names)
    from cdc.control.setup import setup, setup_store

    setup(settings)
    apply_broker(settings.sink)
    workload(pg)
    assert drain(settings).records == 1196
    role = f"cdc_ingest_{uuid.uuid4().hex[:8]}"
    config = tmp_path / "cdc.toml"
    config.write_text(_toml(pg, nats_cluster, jetstream_names))
    printed = CliRunner().invoke(
        main, ["--config", str(config), "setup", "--print-role-sql", "--ingest", "--role", role]
    )
    assert printed.exit_code == 0, printed.output
    assert "REPLICATION" not in printed.output.replace("no REPLICATION", "")
    with store_database(pg.server) as store:
        setup_store(settings, store)
        with psycopg.connect(store, autocommit=True) as admin:
            admin.execute(printed.output)
        try:
            limited = make_conninfo(store, user=role)
            stats = ingest(settings, limited, batch_max=300)
            assert stats.records == 1196
            with psycopg.connect(limited, autocommit=True) as conn:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("DELETE FROM activity.records")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("SELECT * FROM activity.checkpoints")
            with psycopg.connect(store, autocommit=True) as conn:
                chain = verify_chain(conn, "activity", "records")
            assert chain.problem is None and chain.checked == 1196, chain.problem
        finally:
            with psycopg.connect(store, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (role,),
                )
                admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
