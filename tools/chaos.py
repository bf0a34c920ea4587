"""Chaos run: the daemon under SIGKILLs, server restarts and cut connections, against a mixed
workload that writes its own ground truth; at the end the records must equal it exactly.

    python -m tools.chaos --quick  # ~1.5 min: 22 kills (6 at the failpoint), 4 restarts, 6 cuts
    python -m tools.chaos          # ~13 min: 120 kills (30 at the failpoint), 16 restarts, 24 cuts
    python -m tools.chaos --kills 40 --failpoint-kills 10 --restarts 4 --cuts 6 --duration 120
    python -m tools.chaos --jetstream [--quick]   # through NATS JetStream: tools/chaos_jetstream.py

What it does (docs/reliability.md has the details and the last results):

1. Starts its own PostgreSQL (``cdc.demo.embedded``, ``wal_level=logical``, ``fsync=on``), creates
   four audited tables (bigint, composite, uuid and text keys; a TOASTed text column stored
   out of line) and a ledger table that is not published, and runs ``cdc setup``.
2. Writer threads run a mixed workload: inserts, updates, deletes, multi-statement transactions
   with savepoints rolled back, large transactions (streamed: ``decoding_work_mem = 64kB``),
   some transactions rolled back. Every row change writes, in the same statement, a ledger row
   (table, operation, key, xid, md5 of the TOASTed body): committed changes and the ledger agree
   even when a commit's reply is lost in a server crash. Writers reconnect after restarts.
3. The daemon (``python -m cdc ... run``, a subprocess) lives many short lives, each ended by a
   SIGKILL at a random moment or by the failpoint ``CDC_FAILPOINTS=sink.after_commit=N`` (dies
   between the sink commit and the acknowledgement). Some lives also see the source server
   restarted (``fast`` or ``immediate``: a crash), their walsender or their sink backend
   terminated (``pg_terminate_backend``); the daemon must reconnect by itself (its supervisor),
   without exiting.
4. Stops the workload, stops the last daemon with SIGTERM, runs ``cdc run --drain`` and compares
   the records with the ledger as multisets of (table, operation, key, xid): missing,
   duplicated and extra must all be zero, and the TOASTed bodies must match.

Prints a summary and writes it as JSON (``--out``); exit 0 only when the records are exact and
the daemon never exited or failed to reconnect on its own; 1 otherwise (the reason is printed).
"""

# Statements are put together from this module's constants only, never from input.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psycopg

from cdc.demo.embedded import EmbeddedPostgres
from cdc.lsn import Lsn
from cdc.store.chain import verify_chain

REPO = Path(__file__).resolve().parents[1]
SLOT = "chaos"
DATABASE = "chaos"
WALSENDER_NAME = "activity-cdc"  # the daemon's replication connection (cdc.pipeline.stream)
SINK_NAME = "activity-cdc sink"  # the daemon's sink connection (cdc.pipeline.sink)
XID = "mod(txid_current(), 4294967296)"  # the 32-bit xid pgoutput carries

SCHEMA = """
CREATE SCHEMA shop;
CREATE SEQUENCE shop.order_seq;
CREATE SEQUENCE shop.tag_seq;
CREATE TABLE shop.accounts (
    id bigserial PRIMARY KEY, name text NOT NULL, balance numeric(14, 2) NOT NULL,
    status text NOT NULL, version int NOT NULL DEFAULT 0);
CREATE TABLE shop.order_lines (
    order_id bigint, line int, sku text NOT NULL, qty int NOT NULL,
    PRIMARY KEY (order_id, line));
CREATE TABLE shop.documents (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), title text NOT NULL,
    revision int NOT NULL DEFAULT 0, body text NOT NULL);
-- out of line and uncompressed: every body (3-8 kB) is a TOAST pointer, and an update that
-- leaves it alone sends it as "unchanged TOAST"
ALTER TABLE shop.documents ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE shop.tags (name text PRIMARY KEY, uses int NOT NULL DEFAULT 0);
CREATE SCHEMA chaos;
-- the ground truth: not published, written in the same statement as each change
CREATE TABLE chaos.ledger (
    id bigserial PRIMARY KEY, tbl text NOT NULL, op text NOT NULL, key text NOT NULL,
    xid bigint NOT NULL, body_md5 text);
"""
TABLES = ("shop.accounts", "shop.order_lines", "shop.documents", "shop.tags")


# -- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    kills: int  # daemon lives that end in a SIGKILL (ours or the failpoint's)
    failpoint_kills: int  # of which die at sink.after_commit
    fast_restarts: int
    immediate_restarts: int
    walsender_cuts: int
    sink_cuts: int
    duration_s: float  # the chaos phase, roughly
    writers: int


QUICK = Plan(22, 6, 2, 2, 3, 3, 45.0, 3)
LONG = Plan(120, 30, 8, 8, 12, 12, 600.0, 3)


@dataclass
class Life:
    """One daemon process: dies at the failpoint, or gets the disruptions and then SIGKILL."""

    failpoint: int | None  # sink.after_commit=N
    disruptions: list[str] = field(default_factory=list)


def make_lives(plan: Plan, rng: random.Random) -> list[Life]:
    lives = [Life(rng.randint(1, 6)) for _ in range(plan.failpoint_kills)]
    lives += [Life(None) for _ in range(plan.kills - plan.failpoint_kills)]
    rng.shuffle(lives)
    disruptions = (
        ["restart-fast"] * plan.fast_restarts
        + ["restart-immediate"] * plan.immediate_restarts
        + ["cut-walsender"] * plan.walsender_cuts
        + ["cut-sink"] * plan.sink_cuts
    )
    rng.shuffle(disruptions)
    plain = [life for life in lives if life.failpoint is None]
    if disruptions and not plain:
        plain = [Life(None)]
        lives.append(plain[0])
    for index, disruption in enumerate(disruptions):
        # spread over the lives: the first ones one each, then at random
        target = plain[index] if index < len(plain) else rng.choice(plain)
        target.disruptions.append(disruption)
    return lives


# -- results -----------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What every chaos run reports (this one and tools/chaos_jetstream.py's)."""

    ok: bool = False
    verdict: str = ""
    mode: str = ""
    seed: int = 0
    started_at: str = ""
    git_commit: str = ""
    # the comparison (compare_with_ledgers, check_chain)
    changes: int = 0  # ledger rows: committed row changes
    records: int = 0
    records_before_drain: int = 0
    missing: int = 0
    duplicates: int = 0
    extra: int = 0
    chain_checked: int = 0  # records whose hash chain cdc.store.chain recomputed
    chain_problem: str | None = None  # None: the chain holds over every record
    samples: dict[str, list[Any]] = field(default_factory=dict)
    # time
    chaos_s: float = 0.0
    drain_s: float = 0.0
    duration_s: float = 0.0
    workdir: str = ""


@dataclass
class Result(RunResult):
    server_version: str = ""
    plan: dict[str, Any] = field(default_factory=dict)
    # what happened
    daemon_lives: int = 0
    kills: int = 0  # SIGKILLed daemon processes, both kinds
    sigkills: int = 0
    failpoint_kills: int = 0
    failpoint_not_reached: int = 0
    restarts_fast: int = 0
    restarts_immediate: int = 0
    walsender_terminations: int = 0
    sink_terminations: int = 0
    supervisor_reconnects: int = 0  # "reconnecting in" lines in the daemons' logs
    reconnect_max_s: float = 0.0  # after a restart or a cut: until the daemon streams again
    unexpected_exits: list[dict[str, Any]] = field(default_factory=list)
    reconnect_failures: list[str] = field(default_factory=list)
    graceful_stop_exit: int | None = None
    drain_exit: int | None = None
    # the workload
    transactions_committed: int = 0
    transactions_rolled_back: int = 0
    savepoints_rolled_back: int = 0
    large_transactions: int = 0
    commit_in_doubt: int = 0  # the commit's reply was lost: the ledger knows
    writer_errors: int = 0
    toast_mismatches: int = 0
    drain_acknowledged: bool = False  # the slot confirms the WAL end at the drain's start
    setup_s: float = 0.0


# -- the workload ------------------------------------------------------------------------------


def _ledger(table: str, op: str, key: str, md5: str = "NULL") -> str:
    return (
        f"INSERT INTO chaos.ledger (tbl, op, key, xid, body_md5) "
        f"SELECT '{table}', '{op}', {key}, {XID}, {md5} FROM c"
    )


# Row picks: a random starting point in the key space, a few rows from there, skipping rows
# another writer holds (no waits, no deadlocks).
_PICK = {
    "shop.accounts": (
        "id IN (SELECT id FROM shop.accounts WHERE id >= (SELECT (random() * last_value)::bigint"
        " FROM shop.accounts_id_seq) ORDER BY id LIMIT %(n)s FOR UPDATE SKIP LOCKED)"
    ),
    "shop.order_lines": (
        "(order_id, line) IN (SELECT order_id, line FROM shop.order_lines WHERE order_id >= "
        "(SELECT (random() * last_value)::bigint FROM shop.order_seq) ORDER BY order_id, line "
        "LIMIT %(n)s FOR UPDATE SKIP LOCKED)"
    ),
    "shop.documents": (
        "id IN (SELECT id FROM shop.documents WHERE id >= gen_random_uuid() ORDER BY id "
        "LIMIT %(n)s FOR UPDATE SKIP LOCKED)"
    ),
    "shop.tags": (
        "name IN (SELECT name FROM shop.tags WHERE name >= (SELECT 'tag-' || "
        "(random() * last_value)::bigint FROM shop.tag_seq) ORDER BY name LIMIT %(n)s "
        "FOR UPDATE SKIP LOCKED)"
    ),
}
_KEY = {
    "shop.accounts": "id::text",
    "shop.order_lines": "'[' || order_id || ',' || line || ']'",
    "shop.documents": "id::text",
    "shop.tags": "name",
}
_RETURNING = {
    "shop.accounts": "id",
    "shop.order_lines": "order_id, line",
    "shop.documents": "id, md5(body) AS h",
    "shop.tags": "name",
}
_BODY = "repeat(md5(random()::text), %(k)s)"  # 3.2-8 kB, a new value per row


def _insert(table: str, n: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    returning = _RETURNING[table]
    if table == "shop.accounts":
        change = (
            "INSERT INTO shop.accounts (name, balance, status) SELECT 'acct-' || g, g * 1.5, "
            f"'new' FROM generate_series(1, %(n)s) g RETURNING {returning}"
        )
    elif table == "shop.order_lines":
        change = (
            "INSERT INTO shop.order_lines (order_id, line, sku, qty) SELECT o.order_id, l, "
            "'sku-' || (random() * 1000)::int, 1 + (random() * 9)::int FROM (SELECT "
            "nextval('shop.order_seq') AS order_id FROM generate_series(1, %(n)s)) o, "
            f"generate_series(1, %(lines)s) l RETURNING {returning}"
        )
    elif table == "shop.documents":
        change = (
            f"INSERT INTO shop.documents (title, body) SELECT 'doc ' || g, {_BODY} "
            f"FROM generate_series(1, %(n)s) g RETURNING {returning}"
        )
    else:
        change = (
            "INSERT INTO shop.tags (name) SELECT 'tag-' || nextval('shop.tag_seq') "
            f"FROM generate_series(1, %(n)s) RETURNING {returning}"
        )
    md5 = "h" if table == "shop.documents" else "NULL"
    query = f"WITH c AS ({change}) {_ledger(table, 'insert', _KEY[table], md5)}"
    return query, {"n": n, "lines": rng.randint(1, 4), "k": rng.randint(100, 250)}


def _update(table: str, n: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    if table == "shop.accounts":
        assignments = "balance = balance + 1, version = version + 1, status = %(status)s"
    elif table == "shop.order_lines":
        assignments = "qty = qty + 1"
    elif table == "shop.documents":
        if rng.random() < 0.5:  # the body stays: unchanged TOAST in the stream
            assignments = "title = 'rev ' || (revision + 1), revision = revision + 1"
        else:
            assignments = f"body = {_BODY}, revision = revision + 1"
    else:
        assignments = "uses = uses + 1"
    change = f"UPDATE {table} SET {assignments} WHERE {_PICK[table]} RETURNING {_RETURNING[table]}"
    md5 = "h" if table == "shop.documents" else "NULL"
    query = f"WITH c AS ({change}) {_ledger(table, 'update', _KEY[table], md5)}"
    status = rng.choice(["active", "frozen", "closed"])
    return query, {"n": n, "status": status, "k": rng.randint(100, 250)}


def _delete(table: str, n: int) -> tuple[str, dict[str, Any]]:
    change = f"DELETE FROM {table} WHERE {_PICK[table]} RETURNING {_RETURNING[table]}"
    md5 = "h" if table == "shop.documents" else "NULL"
    return f"WITH c AS ({change}) {_ledger(table, 'delete', _KEY[table], md5)}", {"n": n}


def random_statement(rng: random.Random) -> tuple[str, dict[str, Any]]:
    table = rng.choices(TABLES, weights=(4, 3, 2, 2))[0]
    kind = rng.random()
    if kind < 0.5:
        return _insert(table, rng.randint(1, 5), rng)
    if kind < 0.85:
        return _update(table, rng.randint(1, 8), rng)
    return _delete(table, rng.randint(1, 4))


def large_statements(rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """A transaction of a few thousand changes: chunked in the sink, streamed by the server."""
    if rng.random() < 0.6:
        query, params = _insert("shop.order_lines", rng.randint(300, 900), rng)
        return [(query, {**params, "lines": rng.randint(2, 4)})]
    return [
        _insert("shop.documents", rng.randint(40, 120), rng),
        _update("shop.accounts", 500, rng),
    ]


@dataclass
class WorkloadStats:
    committed: int = 0
    rolled_back: int = 0
    savepoints_rolled_back: int = 0
    large: int = 0
    in_doubt: int = 0
    errors: int = 0


class Workload:
    """Writer threads; each reconnects after any error and carries on until stopped."""

    def __init__(self, dsn: str, writers: int, seed: int, pause_s: float = 0.02) -> None:
        self._dsn = dsn
        self._pause_s = pause_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.stats = WorkloadStats()
        self._threads = [
            threading.Thread(
                target=self._run, args=(index, random.Random(seed * 1000 + index)), daemon=True
            )
            for index in range(writers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    def _run(self, index: int, rng: random.Random) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            committing = False
            try:
                if conn is None:
                    conn = psycopg.connect(
                        self._dsn, connect_timeout=3, application_name=f"chaos-writer-{index}"
                    )
                large = rng.random() < 0.01
                if large:
                    statements = large_statements(rng)
                else:
                    statements = [random_statement(rng) for _ in range(rng.choice((1, 1, 2, 4)))]
                savepoint = not large and rng.random() < 0.15
                for number, (query, params) in enumerate(statements):
                    if savepoint and number == len(statements) - 1:
                        conn.execute("SAVEPOINT s")
                        conn.execute(query, params)
                        conn.execute("ROLLBACK TO SAVEPOINT s")
                        self._count(savepoints_rolled_back=1)
                    else:
                        conn.execute(query, params)
                if rng.random() < 0.07:
                    conn.rollback()
                    self._count(rolled_back=1)
                else:
                    committing = True
                    conn.commit()
                    self._count(committed=1, large=int(large))
            except psycopg.Error:
                self._count(in_doubt=int(committing), errors=int(not committing))
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
                conn = None
                self._stop.wait(rng.uniform(0.05, 0.3))
                continue
            self._stop.wait(rng.uniform(0, 2 * self._pause_s))
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


# -- the daemon --------------------------------------------------------------------------------


# The config of a chaos daemon, in parts that tools/chaos_jetstream.py shares (its sink between).
SOURCE_CONFIG = """\
[source]
dsn = '{dsn}'
slot = '{slot}'
publication = '{slot}'
status_interval_ms = 1000
decoding_work_mem = '64kB'
"""
RUN_CONFIG = """\
[batch]
max_rows = 200
max_delay_ms = 50
[daemon]
reconnect_initial_s = 0.1
reconnect_max_s = 1.0
standby_retry_s = 0.2
slot_watch_interval_s = 0
"""
CONFIG = SOURCE_CONFIG + RUN_CONFIG + "heartbeat_interval_s = 1.0\n"


def write_config(path: Path, dsn: str) -> Path:
    body = CONFIG.format(dsn=dsn, slot=SLOT)
    body += "".join(f"[[tables]]\nname = '{table}'\n" for table in TABLES)
    path.write_text(body)
    return path


def child_env(failpoint: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    env["PYTHONPATH"] = str(REPO) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    if failpoint is not None:
        env["CDC_FAILPOINTS"] = f"sink.after_commit={failpoint}"
    return env


def cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cdc", "--config", str(config), "--log-level", "info", *args]


def query(dsn: str, sql: str, params: Any = None, *, timeout_s: float = 60.0) -> list[Any]:
    """Rows of one statement on a fresh connection; retried while the server restarts."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
                cur = conn.execute(sql, params)
                return cur.fetchall() if cur.description else []
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Chaos:
    def __init__(
        self,
        plan: Plan,
        seed: int,
        workdir: Path,
        result: Result,
        log: Callable[[str], None],
        bindir: Path | None = None,
    ) -> None:
        self.bindir = bindir
        self.plan = plan
        self.rng = random.Random(seed)
        self.seed = seed
        self.workdir = workdir
        self.result = result
        self.say = log
        self.server: EmbeddedPostgres | None = None
        self.dsn = ""
        self.config = workdir / "cdc.toml"
        self.daemon_log = workdir / "daemon.log"
        self._log_handle: IO[str] | None = None
        self.launched_at = datetime.now(UTC)
        self.wal_before_drain = "0/0"

    # -- helpers ---------------------------------------------------------------------------

    def slot_pid(self, since: datetime | None = None) -> int | None:
        """The walsender streaming from the slot; with ``since``, only one that connected
        after it (not the walsender of a killed daemon on its way out)."""
        rows = query(
            self.dsn,
            "SELECT s.active_pid FROM pg_replication_slots s JOIN pg_stat_replication r "
            "ON r.pid = s.active_pid WHERE s.slot_name = %s AND r.backend_start > %s",
            (SLOT, since or datetime.fromtimestamp(0, UTC)),
        )
        return rows[0][0] if rows else None

    def sink_pids(self, since: datetime) -> set[int]:
        rows = query(
            self.dsn,
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = %s "
            "AND backend_start > %s",
            (SINK_NAME, DATABASE, since),
        )
        return {row[0] for row in rows}

    def wait(
        self,
        proc: subprocess.Popen[bytes],
        what: str,
        predicate: Callable[[], bool],
        timeout_s: float,
    ) -> bool | None:
        """Poll until ``predicate()``: True; the daemon exited: None; timeout: False."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return None
            try:
                if predicate():
                    return True
            except psycopg.Error:
                pass  # the server is restarting
            time.sleep(0.05)
        self.say(f"  !! {what}: not within {timeout_s:g}s")
        return False

    def launch(self, number: int, life: Life) -> subprocess.Popen[bytes]:
        assert self._log_handle is not None
        what = f"failpoint sink.after_commit={life.failpoint}" if life.failpoint else "plain"
        self._log_handle.write(
            f"\n===== life {number} ({what}; {', '.join(life.disruptions) or 'no disruption'}) "
            f"at {datetime.now(UTC).isoformat()} =====\n"
        )
        self._log_handle.flush()
        self.result.daemon_lives += 1
        self.launched_at = datetime.now(UTC)
        return subprocess.Popen(
            cli(self.config, "run"),
            env=child_env(life.failpoint),
            cwd=self.workdir,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, lines: int = 25) -> str:
        text = self.daemon_log.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def unexpected_exit(self, number: int, proc: subprocess.Popen[bytes], during: str) -> None:
        entry = {"life": number, "exit": proc.returncode, "during": during, "log": self.log_tail()}
        self.result.unexpected_exits.append(entry)
        self.say(f"  !! life {number}: the daemon exited with {proc.returncode} during {during}")

    def streaming(self, since: datetime) -> Callable[[], bool]:
        """Whether a walsender that connected after ``since`` streams from the slot."""
        return lambda: self.slot_pid(since) is not None

    # -- disruptions -----------------------------------------------------------------------

    def disrupt(self, number: int, proc: subprocess.Popen[bytes], kind: str) -> bool:
        """One disruption while the daemon streams; False when the life is over (it exited)."""
        assert self.server is not None
        result = self.result
        launched = self.launched_at
        state = self.wait(
            proc, f"life {number} streams before {kind}", self.streaming(launched), 60
        )
        if state is None:
            self.unexpected_exit(number, proc, f"start before {kind}")
            return False
        if not state:
            result.reconnect_failures.append(f"life {number}: never streamed before {kind}")
            return True
        walsender = self.slot_pid(launched)
        marker = datetime.now(UTC)
        started = time.monotonic()
        back = self.streaming(marker)
        if kind.startswith("restart-"):
            mode = kind.removeprefix("restart-")
            self.server.restart(mode)
            if mode == "fast":
                result.restarts_fast += 1
            else:
                result.restarts_immediate += 1
        elif kind == "cut-walsender":
            rows = query(
                self.dsn,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_replication "
                "WHERE pid = %s AND application_name = %s",
                (walsender, WALSENDER_NAME),
            )
            if not any(done for (done,) in rows):
                self.say(f"  life {number}: its walsender was gone before the cut")
                return True
            result.walsender_terminations += 1
        else:
            rows = query(
                self.dsn,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND datname = %s AND backend_start > %s",
                (SINK_NAME, DATABASE, launched),
            )
            if not any(done for (done,) in rows):
                self.say(f"  life {number}: no sink backend to terminate")
                return True
            result.sink_terminations += 1

            def back() -> bool:  # a new run of the daemon: a new walsender and sink session
                return self.slot_pid(marker) is not None and bool(self.sink_pids(marker))

        state = self.wait(proc, f"life {number} streams again after {kind}", back, 90)
        if state is None:
            self.unexpected_exit(number, proc, f"reconnect after {kind}")
            return False
        if not state:
            result.reconnect_failures.append(f"life {number}: no reconnect after {kind}")
            return True
        elapsed = time.monotonic() - started
        result.reconnect_max_s = max(result.reconnect_max_s, round(elapsed, 2))
        self.say(f"  life {number}: {kind}, streaming again after {elapsed:.1f}s")
        return True

    # -- the phases --------------------------------------------------------------------------

    def setup(self) -> None:
        self.server = EmbeddedPostgres(
            fsync=True, settings={"max_wal_size": "1GB"}, bindir=self.bindir
        )
        self.server.start()
        admin = self.server.dsn
        self.result.server_version = query(admin, "SHOW server_version")[0][0]
        query(admin, f"CREATE DATABASE {DATABASE}")
        self.dsn = self.server.dsn_for(DATABASE)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
        write_config(self.config, self.dsn)
        done = subprocess.run(
            cli(self.config, "setup"),
            env=child_env(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        (self.workdir / "setup.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"cdc setup failed ({done.returncode}): {done.stderr.strip()}")

    def run_lives(self, lives: list[Life]) -> None:
        rng = self.rng
        mean_life_s = self.plan.duration_s / max(len(lives), 1)
        for number, life in enumerate(lives, 1):
            proc = self.launch(number, life)
            try:
                if life.failpoint is not None:
                    self.failpoint_life(number, proc)
                    continue
                alive = True
                for kind in life.disruptions:
                    alive = self.disrupt(number, proc, kind)
                    if not alive:
                        break
                    time.sleep(rng.uniform(0.1, mean_life_s / 2))
                if not alive:
                    continue
                # a random moment: starting up, in standby, reading, writing, acknowledging
                deadline = time.monotonic() + rng.uniform(0.2, 2 * mean_life_s - 0.2)
                while time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.02)
                if proc.poll() is not None:
                    self.unexpected_exit(number, proc, "its run")
                    continue
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                self.result.kills += 1
                self.result.sigkills += 1
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(30)
            if number % 5 == 0:
                records = query(self.dsn, "SELECT count(*) FROM activity.records")[0][0]
                self.say(
                    f"  {number}/{len(lives)} lives, {self.result.kills} kills, "
                    f"{records} records so far"
                )

    def failpoint_life(self, number: int, proc: subprocess.Popen[bytes]) -> None:
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
            self.result.failpoint_not_reached += 1
            self.result.kills += 1
            self.result.sigkills += 1
            self.say(f"  life {number}: never reached its failpoint; SIGKILLed")
            return
        if proc.returncode == -signal.SIGKILL:
            self.result.kills += 1
            self.result.failpoint_kills += 1
        else:
            self.unexpected_exit(number, proc, "a failpoint run")

    def final_life(self, workload: Workload) -> None:
        """A last daemon catches up while the workload still writes, then the workload stops
        and the daemon gets SIGTERM: it must exit 0."""
        proc = self.launch(0, Life(None))
        try:
            state = self.wait(proc, "the last daemon streams", self.streaming(self.launched_at), 60)
            if state is None:
                self.unexpected_exit(0, proc, "the last run")
            time.sleep(2)
            workload.stop()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    self.result.graceful_stop_exit = proc.wait(90)
                except subprocess.TimeoutExpired:
                    self.result.graceful_stop_exit = None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)

    def wait_slot_inactive(self) -> None:
        deadline = time.monotonic() + 60
        while self.slot_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)

    def drain(self) -> None:
        self.wait_slot_inactive()
        count, wal = query(
            self.dsn, "SELECT count(*), pg_current_wal_insert_lsn()::text FROM activity.records"
        )[0]
        self.result.records_before_drain = count
        self.wal_before_drain = wal
        started = time.monotonic()
        with (self.workdir / "drain.log").open("w") as handle:
            for _ in range(5):
                try:
                    code = subprocess.run(
                        cli(self.config, "run", "--drain"),
                        env=child_env(),
                        cwd=self.workdir,
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        timeout=1800,
                    ).returncode
                except subprocess.TimeoutExpired:
                    code = -1
                self.result.drain_exit = code
                if code != 6:  # 6: the slot is still in use by a walsender on its way out
                    break
                time.sleep(1)
        self.result.drain_s = round(time.monotonic() - started, 1)
        self.wait_slot_inactive()  # its walsender has taken the last acknowledgement

    def compare(self) -> None:
        result = self.result
        compare_with_ledgers(result, [self.dsn], self.dsn)
        bodies_ledger = Counter(
            tuple(row)
            for row in query(
                self.dsn,
                "SELECT op, key, xid, body_md5 FROM chaos.ledger WHERE tbl = 'shop.documents'",
            )
        )
        bodies_records = Counter(
            tuple(row)
            for row in query(
                self.dsn,
                "SELECT operation, entity_id, xid, md5(coalesce(new, old)->>'body') "
                "FROM activity.records WHERE table_name = 'documents'",
            )
        )
        result.toast_mismatches = sum(map(Counter.total, difference(bodies_ledger, bodies_records)))
        # The drain's promise: everything committed before it started is acknowledged. (The
        # checkpoint may be further on: the sink is the source database here, and its own
        # transactions over decoding_work_mem reach the daemon as empty streamed transactions,
        # which PostgreSQL does not skip; a later flush carries their position.)
        confirmed, checkpoint = query(
            self.dsn,
            "SELECT s.confirmed_flush_lsn::text, (SELECT end_lsn::text FROM activity.checkpoints "
            "c WHERE c.slot_name = s.slot_name) FROM pg_replication_slots s "
            "WHERE s.slot_name = %s",
            (SLOT,),
        )[0]
        result.drain_acknowledged = Lsn.parse(confirmed) >= Lsn.parse(self.wal_before_drain)
        late = query(
            self.dsn,
            "SELECT count(*) FROM activity.records WHERE commit_lsn > %s::pg_lsn",
            (self.wal_before_drain,),
        )[0][0]
        result.samples["lsn"] = [
            {
                "wal_before_drain": self.wal_before_drain,
                "confirmed_flush": confirmed,
                "checkpoint_end": checkpoint,
                "records_after_wal_before_drain": late,
            }
        ]

    def verify_chain(self) -> None:
        check_chain(self.result, self.dsn)

    def count_reconnects(self) -> None:
        text = self.daemon_log.read_text(errors="replace")
        self.result.supervisor_reconnects = text.count("reconnecting in")

    def run(self) -> None:
        result = self.result
        started = time.monotonic()
        self.say(f"chaos: seed {self.seed}, work directory {self.workdir}")
        self.setup()
        result.setup_s = round(time.monotonic() - started, 1)
        self.say(
            f"PostgreSQL {result.server_version} on port {self.server.port if self.server else 0}"
        )
        lives = make_lives(self.plan, self.rng)
        workload = Workload(self.dsn, self.plan.writers, self.seed)
        self._log_handle = self.daemon_log.open("a")
        try:
            workload.start()
            chaos_started = time.monotonic()
            self.run_lives(lives)
            self.final_life(workload)
            result.chaos_s = round(time.monotonic() - chaos_started, 1)
        finally:
            workload.stop()
            self._log_handle.close()
        stats = workload.stats
        result.transactions_committed = stats.committed
        result.transactions_rolled_back = stats.rolled_back
        result.savepoints_rolled_back = stats.savepoints_rolled_back
        result.large_transactions = stats.large
        result.commit_in_doubt = stats.in_doubt
        result.writer_errors = stats.errors
        self.say(f"chaos phase over after {result.chaos_s:.0f}s; draining")
        self.drain()
        self.compare()
        self.verify_chain()
        self.count_reconnects()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


def compare_with_ledgers(result: RunResult, ledger_dsns: list[str], store_dsn: str) -> None:
    """The store's records against the ledgers of the sources, as multisets of (table,
    operation, key, xid): sets ``changes``, ``records``, ``missing``, ``duplicates``,
    ``extra`` and ``samples`` of ``result``."""
    ledger: Counter[tuple[str, str, str, int]] = Counter()
    for dsn in ledger_dsns:
        for tbl, op, key, xid, count in query(
            dsn, "SELECT tbl, op, key, xid, count(*) FROM chaos.ledger GROUP BY 1, 2, 3, 4"
        ):
            ledger[(tbl, op, key, int(xid))] += count
    records: Counter[tuple[str, str, str, int]] = Counter()
    for tbl, op, key, xid, count in query(
        store_dsn,
        "SELECT coalesce(schema_name || '.' || table_name, source), operation, "
        "coalesce(entity_id, ''), coalesce(xid, -1), count(*) FROM activity.records "
        "GROUP BY 1, 2, 3, 4",
    ):
        records[(tbl, op, key, int(xid))] = count
    result.changes = sum(ledger.values())
    result.records = sum(records.values())
    missing, duplicated, extra = difference(ledger, records)
    result.missing = sum(missing.values())
    result.duplicates = sum(duplicated.values())
    result.extra = sum(extra.values())
    result.samples = {
        "missing": [list(k) for k in list(missing)[:20]],
        "duplicated": [list(k) for k in list(duplicated)[:20]],
        "extra": [list(k) for k in list(extra)[:20]],
    }


def check_chain(result: RunResult, store_dsn: str) -> None:
    """The tamper-evidence chain must have survived every kill, restart and cut: one unbroken
    chain from the genesis over exactly the records compared (``result.records``); sets
    ``chain_checked`` and ``chain_problem``."""
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        report = verify_chain(conn, "activity", "records")
    result.chain_checked = report.checked
    if report.problem is not None:
        result.chain_problem = report.problem
    elif report.checked != result.records or not report.starts_at_genesis:
        result.chain_problem = f"the chain covers {report.checked} of {result.records} records"


def run_and_report(
    chaos: Any, result: RunResult, judge: Callable[[Any], tuple[bool, str]], out: Path | None
) -> int:
    """``chaos.run()`` to a verdict (an interrupt or a broken run is a FAIL that keeps the
    logs), ``chaos.close()``, the summary as JSON to ``out``; the exit code."""
    started = time.monotonic()
    # SIGTERM and SIGINT (ignored in background jobs) end the run with its cleanup: the
    # processes killed, the servers stopped and removed.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        chaos.run()
        result.ok, result.verdict = judge(result)
    except KeyboardInterrupt:
        result.ok, result.verdict = False, "FAIL: interrupted"
    except Exception as exc:  # the run itself broke: say so, keep the logs
        result.ok, result.verdict = False, f"FAIL: the chaos run broke: {exc!r}"
    finally:
        chaos.close()
        result.duration_s = round(time.monotonic() - started, 1)
    if out:
        out.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0 if result.ok else 1


def finish_report(result: RunResult, keep: bool, say: Callable[[str], None]) -> None:
    """The verdict last; the work directory removed after a pass unless ``keep``."""
    say(result.verdict)
    if result.ok and not keep:
        shutil.rmtree(result.workdir, ignore_errors=True)
    else:
        say(f"logs: {result.workdir}")


def difference(
    expected: Counter[Any], actual: Counter[Any]
) -> tuple[Counter[Any], Counter[Any], Counter[Any]]:
    """Multisets compared: (missing, duplicated, extra). Missing: expected more often than it
    occurs; duplicated: occurs more often than expected; extra: occurs, never expected."""
    missing = expected - actual
    surplus = actual - expected
    duplicated = Counter({k: v for k, v in surplus.items() if k in expected})
    extra = Counter({k: v for k, v in surplus.items() if k not in expected})
    return missing, duplicated, extra


# -- the command -------------------------------------------------------------------------------


def verdict(result: Result) -> tuple[bool, str]:
    problems = []
    if result.drain_exit != 0:
        problems.append(f"the final drain exited {result.drain_exit}")
    if result.missing or result.duplicates or result.extra:
        problems.append(
            f"records differ from the ledger: {result.missing} missing, "
            f"{result.duplicates} duplicated, {result.extra} extra"
        )
    if result.toast_mismatches:
        problems.append(f"{result.toast_mismatches} TOASTed bodies differ")
    if result.unexpected_exits:
        problems.append(f"the daemon exited on its own {len(result.unexpected_exits)} times")
    if result.reconnect_failures:
        problems.append(f"{len(result.reconnect_failures)} disruptions without a reconnect")
    if result.graceful_stop_exit != 0:
        problems.append(f"SIGTERM: the last daemon exited {result.graceful_stop_exit}")
    if result.chain_problem is not None:
        problems.append(f"hash chain: {result.chain_problem}")
    if not result.drain_acknowledged:
        problems.append("the drain did not acknowledge everything committed before it")
    if result.changes == 0:
        problems.append("the workload committed nothing")
    if problems:
        return False, "FAIL: " + "; ".join(problems)
    return True, (
        f"EXACT: {result.records} records = {result.changes} committed changes "
        "(0 missing, 0 duplicated, 0 extra)"
    )


def summary_lines(result: Result) -> list[str]:
    r = result
    return [
        f"daemon: {r.daemon_lives} lives, {r.kills} kills ({r.sigkills} SIGKILL, "
        f"{r.failpoint_kills} at the failpoint sink.after_commit), "
        f"{r.restarts_fast} fast + {r.restarts_immediate} immediate server restarts, "
        f"{r.walsender_terminations} walsender + {r.sink_terminations} sink backend "
        f"terminations, {r.supervisor_reconnects} supervisor reconnects "
        f"(slowest {r.reconnect_max_s:.1f}s)",
        f"workload: {r.transactions_committed} transactions committed "
        f"({r.large_transactions} large), {r.transactions_rolled_back} rolled back, "
        f"{r.savepoints_rolled_back} savepoints rolled back, {r.commit_in_doubt} commits in "
        f"doubt, {r.writer_errors} other writer errors",
        f"records: {r.changes} changes, {r.records} records ({r.records_before_drain} before the "
        f"drain); missing {r.missing}, duplicates {r.duplicates}, extra {r.extra}, TOAST "
        f"mismatches {r.toast_mismatches}; hash chain over {r.chain_checked} records: "
        f"{r.chain_problem or 'intact'}",
        f"time: setup {r.setup_s:.0f}s, chaos {r.chaos_s:.0f}s, drain {r.drain_s:.0f}s, "
        f"total {r.duration_s:.0f}s",
    ]


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def parse_plan(args: argparse.Namespace) -> Plan:
    base = QUICK if args.quick else LONG
    kills = base.kills if args.kills is None else args.kills
    failpoint = args.failpoint_kills
    if failpoint is None:
        failpoint = base.failpoint_kills if args.kills is None else max(1, kills // 4)
    restarts = args.restarts
    fast, immediate = (
        (base.fast_restarts, base.immediate_restarts)
        if restarts is None
        else ((restarts + 1) // 2, restarts // 2)
    )
    cuts = args.cuts
    walsender, sink = (
        (base.walsender_cuts, base.sink_cuts) if cuts is None else ((cuts + 1) // 2, cuts // 2)
    )
    if not 0 <= failpoint <= kills:
        raise SystemExit("--failpoint-kills must be between 0 and --kills")
    return Plan(
        kills=kills,
        failpoint_kills=failpoint,
        fast_restarts=fast,
        immediate_restarts=immediate,
        walsender_cuts=walsender,
        sink_cuts=sink,
        duration_s=base.duration_s if args.duration is None else args.duration,
        writers=base.writers if args.writers is None else args.writers,
    )


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the CI size (about 1.5 minutes)")
    parser.add_argument("--kills", type=int, help="daemon processes killed (both kinds)")
    parser.add_argument("--failpoint-kills", type=int, help="of which at sink.after_commit")
    parser.add_argument("--restarts", type=int, help="server restarts, half fast, half immediate")
    parser.add_argument("--cuts", type=int, help="terminated walsenders and sink backends")
    parser.add_argument("--duration", type=float, help="seconds of chaos, roughly")
    parser.add_argument("--writers", type=int, help="workload threads")
    parser.add_argument("--seed", type=int, help="default: from the clock (printed)")
    parser.add_argument("--out", type=Path, help="write the summary here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--bindir", type=Path, help="PostgreSQL server binaries to use")
    parser.add_argument(
        "--jetstream",
        action="store_true",
        help="two sources -> JetStream (3 nodes) -> two ingest processes -> one store "
        "(tools/chaos_jetstream.py)",
    )
    args = parser.parse_args(argv)
    if args.jetstream:
        from tools import chaos_jetstream

        return chaos_jetstream.main(args.quick, args.seed, args.out, args.keep)
    plan = parse_plan(args)
    seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000

    def say(line: str) -> None:
        print(line, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="cdc-chaos-"))
    result = Result(
        mode="quick" if args.quick else "long",
        seed=seed,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        git_commit=_git_commit(),
        plan=asdict(plan),
        workdir=str(workdir),
    )
    chaos = Chaos(plan, seed, workdir, result, say, args.bindir)
    code = run_and_report(chaos, result, verdict, args.out)
    for line in summary_lines(result):
        say(line)
    for exit_ in result.unexpected_exits:
        say(f"unexpected exit in life {exit_['life']} ({exit_['during']}): {exit_['exit']}")
        say(exit_["log"])
    for failure in result.reconnect_failures:
        say(f"no reconnect: {failure}")
    finish_report(result, args.keep, say)
    return code


if __name__ == "__main__":
    sys.exit(main())
