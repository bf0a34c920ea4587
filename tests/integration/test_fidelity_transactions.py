"""Fidelity of transactions and tables: streamed and two-phase transactions, TRUNCATE, keys,
generated columns, schema changes mid-stream, unchanged TOAST, origins, bounded memory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from cdc.control.setup import setup
from cdc.errors import ConfigError
from cdc.service.daemon import Daemon
from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, make_settings, records, setup_and_settings

pytestmark = [pytest.mark.integration, pytest.mark.every_server]
REPO = Path(__file__).resolve().parents[2]


# The minimum logical_decoding_work_mem: every transaction over 64 kB is streamed while it runs.
MIN_DECODING_MEMORY = {"decoding_work_mem": "64kB"}


def test_streamed_transactions_with_subtransaction_aborts_record_only_committed_work(
    pg: PgDatabase,
) -> None:
    settings = setup_and_settings(
        pg,
        "CREATE TABLE t (id int PRIMARY KEY, note text)",
        [{"name": "public.t"}],
        source=MIN_DECODING_MEMORY,
    )
    big = pg.connect(autocommit=False)
    small = pg.connect()
    aborted = pg.connect(autocommit=False)
    try:
        big.execute("INSERT INTO t SELECT g, repeat('a', 200) FROM generate_series(1, 3000) g")
        big.execute("SAVEPOINT s1")
        big.execute("INSERT INTO t SELECT g, 'rolled back' FROM generate_series(3001, 5000) g")
        big.execute("ROLLBACK TO SAVEPOINT s1")
        big.execute("SAVEPOINT s2")
        big.execute("UPDATE t SET note = 'kept in s2' WHERE id <= 1000")
        big.execute("RELEASE SAVEPOINT s2")
        small.execute("INSERT INTO t VALUES (-1, 'small, commits first')")
        aborted.execute(
            "INSERT INTO t SELECT g, repeat('z', 200) FROM generate_series(10001, 13000) g"
        )
        big.execute("INSERT INTO t SELECT g, repeat('b', 200) FROM generate_series(5001, 6000) g")
        small.execute("INSERT INTO t VALUES (-2, 'small, commits second')")
        aborted.rollback()
        big.commit()
    finally:
        big.close()
        small.close()
        aborted.close()
    stats = drain(settings)
    assert stats.streamed_transactions >= 1
    rows = records(pg)
    ops = [(r["operation"], r["entity_id"]) for r in rows]
    assert ops[:2] == [("insert", "-1"), ("insert", "-2")]
    body = rows[2:]
    assert len(body) == 3000 + 1000 + 1000
    assert {r["xid"] for r in body} == {body[0]["xid"]}
    assert [r["seq"] for r in body] == list(range(5000))
    ids = [int(r["entity_id"]) for r in body if r["operation"] == "insert"]
    assert ids == list(range(1, 3001)) + list(range(5001, 6001))
    assert not any(r["new"]["note"] in ("rolled back",) for r in body)
    assert all(r["new"]["note"] == "kept in s2" for r in body if r["operation"] == "update")
    assert not any(int(r["entity_id"]) > 10000 for r in rows)


def test_prepared_transactions_are_recorded_once_at_commit_prepared_and_never_if_rolled_back(
    pg: PgDatabase,
) -> None:
    settings = setup_and_settings(
        pg, "CREATE TABLE t (id int PRIMARY KEY, note text)", [{"name": "public.t"}]
    )
    gid = f"cdc-{pg.name}"
    with pg.connect(autocommit=False) as conn:
        conn.execute("INSERT INTO t VALUES (1, 'prepared, committed')")
        conn.execute(f"PREPARE TRANSACTION '{gid}-1'")
        conn.execute("INSERT INTO t VALUES (2, 'prepared, rolled back')")
        conn.execute(f"PREPARE TRANSACTION '{gid}-2'")
    assert drain(settings).records == 0  # prepared is not committed
    pg.execute(f"COMMIT PREPARED '{gid}-1'")
    pg.execute(f"ROLLBACK PREPARED '{gid}-2'")
    drain(settings)
    drain(settings)
    assert [(r["entity_id"], r["new"]["note"]) for r in records(pg)] == [
        ("1", "prepared, committed")
    ]


def test_truncate_cascade_records_each_truncated_table(pg: PgDatabase) -> None:
    settings = setup_and_settings(
        pg,
        "CREATE TABLE parent (id int PRIMARY KEY); "
        "CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent);",
        [{"name": "public.parent"}, {"name": "public.child"}],
    )
    pg.execute("INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1)")
    pg.execute("TRUNCATE parent CASCADE")
    drain(settings)
    truncated = [
        (r["table_name"], r["context"]) for r in records(pg) if r["operation"] == "truncate"
    ]
    assert sorted(truncated) == [("child", {"cascade": True}), ("parent", {"cascade": True})]


def test_keys_composite_and_missing(pg: PgDatabase) -> None:
    settings = setup_and_settings(
        pg,
        "CREATE TABLE roles (user_id int, role text, PRIMARY KEY (user_id, role)); "
        "CREATE TABLE events (kind text, at timestamptz);",
        [{"name": "public.roles"}, {"name": "public.events"}],
    )
    pg.execute("INSERT INTO roles VALUES (7, 'admin'); INSERT INTO events VALUES ('x', now())")
    pg.execute("UPDATE events SET kind = 'y'; DELETE FROM roles")
    drain(settings)
    got = [(r["table_name"], r["operation"], r["entity_id"]) for r in records(pg)]
    assert got == [
        ("roles", "insert", '[7,"admin"]'),
        ("events", "insert", None),
        ("events", "update", None),
        ("roles", "delete", '[7,"admin"]'),
    ]
    update = records(pg)[2]
    assert update["old"]["kind"] == "x" and update["changes"] == {"kind": {"old": "x", "new": "y"}}


def test_generated_columns_are_recorded_as_postgresql_sends_them(pg: PgDatabase) -> None:
    settings = setup_and_settings(
        pg,
        "CREATE TABLE g (id int PRIMARY KEY, net numeric, "
        "gross numeric GENERATED ALWAYS AS (net * 1.2) STORED)",
        [{"name": "public.g"}],
    )
    pg.execute("INSERT INTO g (id, net) VALUES (1, 100)")
    (inserted,) = pg.execute("SELECT to_jsonb(g) FROM g")[0]
    pg.execute("UPDATE g SET net = 200")
    (updated,) = pg.execute("SELECT to_jsonb(g) FROM g")[0]
    server_version = int(pg.execute("SHOW server_version_num")[0][0])
    drain(settings)
    insert, update = records(pg)
    if server_version >= 180000:
        # setup's publication says publish_generated_columns = stored: as to_jsonb shows them
        assert inserted == {"id": 1, "net": 100, "gross": 120.0}
        assert insert["new"] == inserted
        assert update["old"] == inserted and update["new"] == updated
        assert update["changes"] == {
            "net": {"old": 100, "new": 200},
            "gross": {"old": 120.0, "new": 240.0},
        }
    else:  # pgoutput sends no generated column before 18
        assert insert["new"] == {"id": 1, "net": 100}
        assert update["new"] == {"id": 1, "net": 200}
        assert update["changes"] == {"net": {"old": 100, "new": 200}}


def test_schema_changes_mid_stream_use_the_columns_current_at_each_change(pg: PgDatabase) -> None:
    settings = setup_and_settings(
        pg,
        "CREATE TABLE s (id int PRIMARY KEY, amount int, note text)",
        [{"name": "public.s", "entity_type": "thing", "category": "catalog"}],
    )
    steps = [
        "INSERT INTO s VALUES (1, 10, 'a')",
        "ALTER TABLE s ADD COLUMN flag boolean",
        "INSERT INTO s VALUES (2, 20, 'b', true)",
        "ALTER TABLE s ADD COLUMN level int NOT NULL DEFAULT 5",
        "INSERT INTO s (id, amount, note) VALUES (3, 30, 'c')",
        "ALTER TABLE s ALTER COLUMN amount TYPE numeric(10, 2)",
        "UPDATE s SET amount = amount + 0.5 WHERE id = 1",
        "ALTER TABLE s DROP COLUMN note",
        "INSERT INTO s (id, amount) VALUES (4, 40)",
        "ALTER TABLE s RENAME TO s_renamed",
        "INSERT INTO s_renamed (id, amount) VALUES (5, 50)",
    ]
    daemon = Daemon(settings)  # running, as in production: the rename happens under it
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        for step in steps:
            pg.execute(step)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(records(pg)) < 6:
            time.sleep(0.05)
    finally:
        daemon.request_stop()
        thread.join(timeout=30)
        daemon.close()
    rows = records(pg)
    assert [r["new"] for r in rows] == [
        {"id": 1, "amount": 10, "note": "a"},
        {"id": 2, "amount": 20, "note": "b", "flag": True},
        {"id": 3, "amount": 30, "note": "c", "flag": None, "level": 5},
        {"id": 1, "amount": 10.50, "note": "a", "flag": None, "level": 5},
        {"id": 4, "amount": 40.00, "flag": None, "level": 5},
        {"id": 5, "amount": 50.00, "flag": None, "level": 5},
    ]
    assert rows[3]["changes"] == {"amount": {"old": 10.00, "new": 10.50}}
    # renamed under the daemon: still the same table's rules, under its new name
    assert (rows[5]["table_name"], rows[5]["category"], rows[5]["entity_type"]) == (
        "s_renamed",
        "catalog",
        "thing",
    )


def test_unchanged_toast_without_full_identity_is_reported_unavailable_not_stored(
    pg: PgDatabase,
) -> None:
    settings = setup_and_settings(
        pg, "CREATE TABLE d (id int PRIMARY KEY, n int, body text)", [{"name": "public.d"}]
    )
    pg.execute("ALTER TABLE d REPLICA IDENTITY DEFAULT")  # someone undid what setup did
    big = "".join(f"{i:05d}" for i in range(40_000))
    pg.execute("INSERT INTO d VALUES (1, 0, %s)", (big,))
    pg.execute("UPDATE d SET n = 1 WHERE id = 1")
    drain(settings)
    insert, update = records(pg)
    assert insert["new"]["body"] == big
    assert "body" not in update["new"]
    assert update["context"] == {"unavailable_columns": ["body"]}
    assert update["old"] is None  # DEFAULT identity sends no old row when the key is unchanged


def test_changes_replicated_from_another_origin_are_marked_with_it(pg: PgDatabase) -> None:
    settings = setup_and_settings(pg, "CREATE TABLE o (id int PRIMARY KEY)", [{"name": "public.o"}])
    origin = f"peer_{pg.slot}"
    pg.execute("SELECT pg_replication_origin_create(%s)", (origin,))
    try:
        with pg.connect() as conn:
            conn.execute("SELECT pg_replication_origin_session_setup(%s)", (origin,))
            conn.execute("INSERT INTO o VALUES (1)")
            conn.execute("SELECT pg_replication_origin_session_reset()")
            conn.execute("INSERT INTO o VALUES (2)")
        drain(settings)
        contexts = [r["context"] for r in records(pg)]
        assert contexts == [{"origin": origin}, None]
    finally:
        pg.execute("SELECT pg_replication_origin_drop(%s)", (origin,))


def test_logical_messages_do_not_disturb_the_records(pg: PgDatabase) -> None:
    settings = setup_and_settings(pg, "CREATE TABLE m (id int PRIMARY KEY)", [{"name": "public.m"}])
    with pg.connect(autocommit=False) as conn:
        conn.execute("INSERT INTO m VALUES (1)")
        conn.execute("SELECT pg_logical_emit_message(true, 'cdc.context', '{\"actor\": 1}')")
        conn.execute("INSERT INTO m VALUES (2)")
        conn.commit()
    pg.execute("SELECT pg_logical_emit_message(false, 'other', 'not transactional')")
    drain(settings)
    rows = records(pg)
    assert [(r["entity_id"], r["seq"]) for r in rows] == [("1", 0), ("2", 2)]


@pytest.mark.parametrize(
    "decoding_work_mem", ["64kB", "1GB"], ids=["streamed-by-server", "not-streamed"]
)
def test_a_large_transaction_is_captured_with_bounded_memory(
    pg: PgDatabase, tmp_path: Path, decoding_work_mem: str
) -> None:
    """200k changes in one transaction (the benchmark runs 1,000,000): peak RSS of the daemon
    process stays under 200 MB whether the server streams the transaction (spilled by us) or
    sends it whole at commit (held in memory up to a bound, the rest spilled); exact records."""
    pg.execute("CREATE TABLE big (id int PRIMARY KEY, payload text)")
    settings = make_settings(pg, [{"name": "public.big"}], batch={"max_rows": 5000})
    setup(settings)
    pg.execute(
        "INSERT INTO big SELECT g, md5(g::text) || repeat('x', 100) "
        "FROM generate_series(1, 200000) g"
    )
    config = tmp_path / "cdc.toml"
    config.write_text(
        f"[source]\ndsn = '{pg.dsn}'\nslot = '{pg.slot}'\npublication = '{pg.publication}'\n"
        f"decoding_work_mem = '{decoding_work_mem}'\n[batch]\nmax_rows = 5000\n"
        "[[tables]]\nname = 'public.big'\n"
    )
    # VmHWM belongs to the process's own address space; ru_maxrss would also count the
    # forked test runner's pages (it survives exec).
    script = (
        "import re, sys\n"
        "from cdc.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "status = open('/proc/self/status').read()\n"
        "print('maxrss_kb', re.search(r'VmHWM:\\s+(\\d+)', status).group(1), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "--config", str(config), "run", "--drain"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    peak_kb = int(result.stderr.rsplit("maxrss_kb", 1)[1].split()[0])
    assert peak_kb < 200 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"
    (count, distinct) = pg.execute(
        "SELECT count(*), count(DISTINCT (new->>'id')) FROM activity.records"
    )[0]
    assert (count, distinct) == (200_000, 200_000)


_ = psycopg


def test_partitioned_table_is_reported_under_its_root_including_partitions_added_later(
    pg: PgDatabase,
) -> None:
    settings = setup_and_settings(
        pg,
        "CREATE TABLE ledger (id int, region text, amount numeric, PRIMARY KEY (id, region)) "
        "PARTITION BY LIST (region); "
        "CREATE TABLE ledger_eu PARTITION OF ledger FOR VALUES IN ('eu');",
        [{"name": "public.ledger", "entity_type": "entry"}],
    )
    identities = dict(
        pg.execute(
            "SELECT relname, relreplident::text FROM pg_class "
            "WHERE relname LIKE 'ledger%' AND relkind IN ('r', 'p')"
        )
    )
    assert identities == {"ledger": "f", "ledger_eu": "f"}
    pg.execute("INSERT INTO ledger VALUES (1, 'eu', 10)")
    pg.execute("CREATE TABLE ledger_us PARTITION OF ledger FOR VALUES IN ('us')")
    pg.execute("ALTER TABLE ledger_us REPLICA IDENTITY FULL")  # what re-running setup does
    pg.execute("INSERT INTO ledger VALUES (2, 'us', 20)")
    pg.execute("UPDATE ledger SET amount = 11 WHERE id = 1")
    drain(settings)
    got = [(r["table_name"], r["operation"], r["entity_id"], r["entity_type"]) for r in records(pg)]
    assert got == [
        ("ledger", "insert", '[1,"eu"]', "entry"),
        ("ledger", "insert", '[2,"us"]', "entry"),
        ("ledger", "update", '[1,"eu"]', "entry"),
    ]
    assert records(pg)[2]["changes"] == {"amount": {"old": 10, "new": 11}}


def test_a_publication_column_list_keeps_other_columns_on_the_server(pg: PgDatabase) -> None:
    ddl = "CREATE TABLE people (id int PRIMARY KEY, name text, ssn text, notes text)"
    if int(pg.execute("SHOW server_version_num")[0][0]) < 150000:
        pytest.skip("publication column lists need PostgreSQL 15")  # not counted as passing
    settings = setup_and_settings(pg, ddl, [{"name": "public.people", "columns": ["id", "name"]}])
    pg.execute("INSERT INTO people VALUES (1, 'Ada', '123-45-6789', 'private')")
    pg.execute("UPDATE people SET name = 'Ada L.', notes = 'x' WHERE id = 1")
    drain(settings)
    insert, update = records(pg)
    assert insert["new"] == {"id": 1, "name": "Ada"}
    # The identity stays the key (FULL would break the application's updates): no old row.
    assert update["new"] == {"id": 1, "name": "Ada L."} and update["changes"] is None
    assert pg.execute("SELECT relreplident::text FROM pg_class WHERE relname = 'people'") == [
        ("d",)
    ]
    dump = pg.execute("SELECT string_agg(r::text, ' ') FROM activity.records r")[0][0]
    assert "123-45-6789" not in dump and "private" not in dump
    # the list can change: setup follows the config
    settings2 = make_settings(pg, [{"name": "public.people", "columns": ["id", "name", "notes"]}])
    assert any("publication" in line for line in setup(settings2).actions)
    assert setup(settings2).actions == []
    with pytest.raises(ConfigError, match="must include the primary key"):
        setup(make_settings(pg, [{"name": "public.people", "columns": ["name"]}]))
