"""Chaos run through NATS JetStream: two sources -> two daemons -> one stream (3 replicas) -> two
ingest processes -> one store, under SIGKILLs, a stopped NATS node and cut connections; at the
end the store must equal the committed changes of both sources exactly, and the stream must hold
each message once.

    python -m tools.chaos --jetstream --quick   # ~2 min: 24 faults
    python -m tools.chaos --jetstream           # ~12 min: 100 faults

What it does (docs/scale-out.md has the last results):

1. Starts its own PostgreSQL (``cdc.embedded``) with two source databases, each with the chaos
   schema and ledger of tools/chaos.py and its own slot, and a third database for the store;
   starts its own 3-node NATS cluster (``cdc.embedded_nats``); ``cdc setup`` creates the stream
   (replicas 3) and the bucket.
2. The mixed workload of tools/chaos.py writes to both sources (each change and its ledger row
   in one statement). Two ``cdc run`` daemons publish; two ``cdc ingest`` processes share one
   durable consumer and write the store.
3. Faults at random moments: SIGKILL of a daemon (some of them at the failpoints
   ``jetstream.before_checkpoint`` / ``jetstream.after_checkpoint``: between the PubAcks and the
   bucket's checkpoint, and between it and the acknowledgement to PostgreSQL), SIGKILL of an
   ingest process, a NATS node stopped for 10 s and started again, a NATS node killed and
   restarted at once (every client connection to it cut), the daemons' walsenders and the
   ingest processes' store connections terminated. Killed processes are started again; the
   others must get through everything by themselves (exit only when killed).
4. Stops the workload, SIGTERMs everything (exit 0 expected), drains both daemons and then
   ingest, and compares: the store's records with the union of both ledgers as multisets of
   (table, operation, key, xid) (0 missing, 0 duplicated, 0 extra); the stream's messages
   (each ``Nats-Msg-Id`` once); the store's hash chain over every record.
"""

# Statements are put together from this module's constants only, never from input.

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import psycopg
from psycopg import sql

from cdc.demo.embedded import EmbeddedPostgres
from cdc.demo.embedded_nats import NatsCluster
from tools.chaos import (
    RUN_CONFIG,
    SCHEMA,
    SOURCE_CONFIG,
    TABLES,
    RunResult,
    Workload,
    _git_commit,
    check_chain,
    child_env,
    compare_with_ledgers,
    finish_report,
    query,
    run_and_report,
)

SOURCES = ("src_a", "src_b")
STORE = "store"
STREAM = "ACTIVITY"
CONSUMER = "activity_ingest"
STORE_APP = "activity-cdc sink"  # the ingest's store connection (cdc.sink.Sink)
WALSENDER_APP = "activity-cdc"

CONFIG = (
    SOURCE_CONFIG
    + """\
[sink]
kind = 'jetstream'
servers = [{servers}]
stream = '{stream}'
replicas = 3
source_name = '{slot}'
publish_timeout_s = 5
"""
    + RUN_CONFIG
)

FAULTS = (
    "kill_daemon",
    "failpoint_daemon",
    "kill_ingest",
    "stop_node",
    "kill_node",
    "cut_walsender",
    "cut_store",
)


@dataclass(frozen=True)
class Plan:
    faults: dict[str, int]
    duration_s: float
    writers: int  # per source


QUICK = Plan(
    {
        "kill_daemon": 6,
        "failpoint_daemon": 4,
        "kill_ingest": 6,
        "stop_node": 1,
        "kill_node": 1,
        "cut_walsender": 3,
        "cut_store": 3,
    },
    60.0,
    2,
)
LONG = Plan(
    {
        "kill_daemon": 24,
        "failpoint_daemon": 16,
        "kill_ingest": 24,
        "stop_node": 6,
        "kill_node": 6,
        "cut_walsender": 12,
        "cut_store": 12,
    },
    600.0,
    2,
)


@dataclass
class Result(RunResult):
    faults: dict[str, int] = field(default_factory=dict)
    fault_total: int = 0
    failpoint_not_reached: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    graceful_stop_exits: list[int | None] = field(default_factory=list)
    drain_exits: list[int] = field(default_factory=list)
    stream_messages: int = 0
    stream_distinct_ids: int = 0


class Proc:
    """One long-running child (a daemon or an ingest process) that the run restarts."""

    def __init__(self, name: str, argv: list[str], log: IO[bytes], ready: str) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.ready_line = ready.encode()  # logged once it works (its signal handlers are set)
        self.proc: subprocess.Popen[bytes] | None = None
        self.expect_death = False
        self._log_offset = 0

    def start(self, failpoint: str | None = None) -> None:
        env = child_env()
        if failpoint:
            env["CDC_FAILPOINTS"] = failpoint
        self.expect_death = failpoint is not None
        self.log.write(f"--- {self.name} start {failpoint or ''}\n".encode())
        self.log.flush()
        self._log_offset = self.log.tell()
        self.proc = subprocess.Popen(
            self.argv, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, env=env
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until this life has logged its ready line (a SIGTERM before the handler is set up
        would only prove that Python dies of it)."""
        deadline = time.monotonic() + timeout_s
        path = Path(self.log.name)
        while time.monotonic() < deadline:
            with path.open("rb") as handle:
                handle.seek(self._log_offset)
                if self.ready_line in handle.read():
                    return
            if self.proc is not None and self.proc.poll() is not None:
                return
            time.sleep(0.2)

    def terminate(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
                return None
        return self.proc.returncode


class JetStreamChaos:
    def __init__(self, plan: Plan, seed: int, workdir: Path, result: Result) -> None:
        self.plan = plan
        self.rng = random.Random(seed)
        self.seed = seed
        self.workdir = workdir
        self.result = result
        self.server: EmbeddedPostgres | None = None
        self.cluster: NatsCluster | None = None
        self.dsns: dict[str, str] = {}
        self.configs: dict[str, Path] = {}
        self.daemons: list[Proc] = []
        self.ingests: list[Proc] = []
        self.logs: list[IO[bytes]] = []

    def say(self, line: str) -> None:
        print(line, flush=True)

    # -- set-up -------------------------------------------------------------------------------
    def setup(self) -> None:
        self.server = EmbeddedPostgres(fsync=True, settings={"max_wal_size": "1GB"})
        self.server.start()
        self.cluster = NatsCluster(3, name="cdc-chaos")
        self.cluster.start()
        servers = ", ".join(f"'{url}'" for url in self.cluster.urls)
        with psycopg.connect(self.server.dsn, autocommit=True) as admin:
            for name in (*SOURCES, STORE):
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        for name in (*SOURCES, STORE):
            self.dsns[name] = self.server.dsn_for(name)
        for name in SOURCES:
            query(self.dsns[name], SCHEMA)
            body = CONFIG.format(dsn=self.dsns[name], slot=name, servers=servers, stream=STREAM)
            body += "".join(f"[[tables]]\nname = '{table}'\n" for table in TABLES)
            path = self.workdir / f"{name}.toml"
            path.write_text(body)
            self.configs[name] = path
            done = subprocess.run(
                _cli(path, "setup"), capture_output=True, env=child_env(), timeout=300
            )
            if done.returncode != 0:
                raise RuntimeError(f"cdc setup for {name} failed: {done.stderr.decode()[-2000:]}")

    def _log(self, name: str) -> IO[bytes]:
        handle = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 (closed in close())
        self.logs.append(handle)
        return handle

    def _ingest(self, *args: str) -> list[str]:
        """cdc ingest into the store through the shared consumer (ack wait 3 s: a killed
        process's messages come again soon)."""
        store, config = self.dsns[STORE], self.configs[SOURCES[0]]
        return _cli(
            config, "ingest", "--to", store, "--consumer", CONSUMER, "--ack-wait", "3", *args
        )

    def start_processes(self) -> None:
        for name in SOURCES:
            self.daemons.append(
                Proc(name, _cli(self.configs[name], "run"), self._log(name), "streaming from slot")
            )
        for index in range(2):
            argv = self._ingest("--batch", "500")
            self.ingests.append(
                Proc(f"ingest{index}", argv, self._log(f"ingest{index}"), "ingesting stream")
            )
        for proc in (*self.daemons, *self.ingests):
            proc.start()

    # -- chaos --------------------------------------------------------------------------------
    def schedule(self) -> list[str]:
        faults = [kind for kind, count in self.plan.faults.items() for _ in range(count)]
        self.rng.shuffle(faults)
        return faults

    def check_alive(self) -> None:
        """Restart what died; a death nobody caused is an unexpected exit."""
        for proc in (*self.daemons, *self.ingests):
            assert proc.proc is not None
            code = proc.proc.poll()
            if code is None:
                continue
            if proc.expect_death and code == -signal.SIGKILL:
                self.result.faults["failpoint_daemon_hit"] = (
                    self.result.faults.get("failpoint_daemon_hit", 0) + 1
                )
            else:
                self.result.unexpected_exits.append(f"{proc.name} exited {code}")
            proc.start()

    def inflict(self, kind: str) -> None:
        assert self.cluster is not None
        rng = self.rng
        if kind == "kill_daemon":
            rng.choice(self.daemons).kill()
            self._restart_killed()
        elif kind == "failpoint_daemon":
            daemon = rng.choice(self.daemons)
            daemon.kill()
            point = rng.choice(("jetstream.before_checkpoint", "jetstream.after_checkpoint"))
            daemon.start(f"{point}={rng.randint(2, 8)}")
        elif kind == "kill_ingest":
            rng.choice(self.ingests).kill()
            self._restart_killed()
        elif kind == "stop_node":
            node = rng.randrange(3)
            self.say(f"  NATS node {node} stopped for 10 s")
            self.cluster.stop_node(node)
            self._sleep(10.0)
            self.cluster.start_node(node)
        elif kind == "kill_node":
            node = rng.randrange(3)
            self.cluster.stop_node(node, kill=True)
            self.cluster.start_node(node)
        elif kind == "cut_walsender":
            name = rng.choice(SOURCES)
            query(
                self.dsns[name],
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE backend_type = 'walsender' AND application_name = %s",
                (WALSENDER_APP,),
            )
        elif kind == "cut_store":
            query(
                self.dsns[STORE],
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND datname = %s",
                (STORE_APP, STORE),
            )
        self.result.faults[kind] = self.result.faults.get(kind, 0) + 1

    def _restart_killed(self) -> None:
        for proc in (*self.daemons, *self.ingests):
            assert proc.proc is not None
            if proc.proc.poll() == -signal.SIGKILL and not proc.expect_death:
                proc.start()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
            self.check_alive()

    def run_chaos(self, workloads: list[Workload]) -> None:
        faults = self.schedule()
        gap = self.plan.duration_s / (len(faults) + 1)
        started = time.monotonic()
        for number, kind in enumerate(faults, 1):
            self._sleep(self.rng.uniform(0.5 * gap, 1.5 * gap))
            self.say(f"fault {number}/{len(faults)}: {kind}")
            self.inflict(kind)
        self._sleep(3.0)
        self.result.chaos_s = round(time.monotonic() - started, 1)
        for workload in workloads:
            workload.stop()

    # -- the end ------------------------------------------------------------------------------
    def finish(self) -> None:
        started = time.monotonic()
        self.check_alive()
        for proc in self.daemons:
            if proc.expect_death:  # armed at a failpoint: the graceful stop would hit it
                proc.kill()
                proc.start()
        for proc in (*self.daemons, *self.ingests):
            proc.wait_ready()
        for proc in self.daemons:
            self.result.graceful_stop_exits.append(proc.terminate())
        for name in SOURCES:
            done = subprocess.run(
                _cli(self.configs[name], "run", "--drain"),
                capture_output=True,
                env=child_env(),
                timeout=900,
            )
            self.result.drain_exits.append(done.returncode)
            if done.returncode != 0:
                self.say(f"drain of {name}: {done.stderr.decode()[-2000:]}")
        self.result.records_before_drain = _count(self.dsns[STORE])
        for proc in self.ingests:
            self.result.graceful_stop_exits.append(proc.terminate())
        done = subprocess.run(
            self._ingest("--drain"),
            capture_output=True,
            env=child_env(),
            timeout=900,
        )
        self.result.drain_exits.append(done.returncode)
        if done.returncode != 0:
            self.say(f"ingest drain: {done.stderr.decode()[-2000:]}")
        self.result.drain_s = round(time.monotonic() - started, 1)

    def compare(self) -> None:
        compare_with_ledgers(self.result, [self.dsns[name] for name in SOURCES], self.dsns[STORE])
        assert self.cluster is not None
        ids = self._read_stream_ids(self.cluster.urls)
        self.result.stream_messages = len(ids)
        self.result.stream_distinct_ids = len(set(ids))
        check_chain(self.result, self.dsns[STORE])

    def _read_stream_ids(self, urls: list[str], attempts: int = 3) -> list[str]:
        """The stream's message ids, read again from the start when JetStream does not answer
        for 30 s: right after a node was killed its cluster may still be electing leaders
        (seen once in a fresh-clone CI, every record in the store). Counting is unchanged:
        every attempt reads the whole stream."""
        for attempt in range(1, attempts):
            try:
                return asyncio.run(_message_ids(urls))
            except TimeoutError:
                self.say(f"reading the stream timed out (attempt {attempt}); reading it again")
                time.sleep(5)
        return asyncio.run(_message_ids(urls))  # the last attempt: a timeout now is the run's

    def run(self) -> None:
        self.say(f"chaos through JetStream: seed {self.seed}, {sum(self.plan.faults.values())} "
                 f"faults over ~{self.plan.duration_s:.0f}s; work dir {self.workdir}")  # fmt: skip
        self.setup()
        workloads = [
            Workload(self.dsns[name], self.plan.writers, self.seed + index)
            for index, name in enumerate(SOURCES)
        ]
        self.start_processes()
        for workload in workloads:
            workload.start()
        try:
            self.run_chaos(workloads)
        finally:
            for workload in workloads:
                workload.stop()
        self.finish()
        self.compare()
        self.result.fault_total = sum(
            v for k, v in self.result.faults.items() if k != "failpoint_daemon_hit"
        )

    def close(self) -> None:
        for proc in (*self.daemons, *self.ingests):
            with contextlib.suppress(Exception):
                proc.kill()
        for handle in self.logs:
            handle.close()
        if self.cluster is not None:
            self.cluster.stop()
        if self.server is not None:
            self.server.stop()


async def _message_ids(urls: list[str]) -> list[str]:
    """The Nats-Msg-Id of every message in the stream (an ordered consumer, headers only)."""
    import nats
    from nats.js import api

    nc = await nats.connect(urls, connect_timeout=3)
    try:
        js = nc.jetstream(timeout=30)
        info = await js.stream_info(STREAM)
        total = int(info.state.messages)
        ids: list[str] = []
        sub = await js.subscribe(
            "activity.>",
            stream=STREAM,
            ordered_consumer=True,
            headers_only=True,
            deliver_policy=api.DeliverPolicy.ALL,
        )
        while len(ids) < total:
            msg = await sub.next_msg(timeout=30)
            ids.append((msg.headers or {}).get("Nats-Msg-Id", ""))
        await sub.unsubscribe()
        return ids
    finally:
        await nc.close()


def _count(dsn: str) -> int:
    return int(query(dsn, "SELECT count(*) FROM activity.records")[0][0])


def _cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cdc", "--config", str(config), "--log-level", "info", *args]


def verdict(result: Result) -> tuple[bool, str]:
    problems = []
    if any(code != 0 for code in result.drain_exits):
        problems.append(f"a final drain failed: {result.drain_exits}")
    if result.missing or result.duplicates or result.extra:
        problems.append(
            f"the store differs from the ledgers: {result.missing} missing, "
            f"{result.duplicates} duplicated, {result.extra} extra"
        )
    if result.stream_messages != result.stream_distinct_ids:
        problems.append(
            f"the stream holds {result.stream_messages - result.stream_distinct_ids} messages twice"
        )
    if result.stream_messages != result.changes:
        problems.append(
            f"the stream holds {result.stream_messages} messages for {result.changes} changes"
        )
    if result.unexpected_exits:
        problems.append(f"processes exited on their own: {result.unexpected_exits[:5]}")
    if any(code != 0 for code in result.graceful_stop_exits):
        problems.append(f"SIGTERM exits: {result.graceful_stop_exits}")
    if result.chain_problem is not None:
        problems.append(f"hash chain: {result.chain_problem}")
    if result.changes == 0:
        problems.append("the workload committed nothing")
    if problems:
        return False, "FAIL: " + "; ".join(problems)
    return True, (
        f"EXACT: {result.records} records = {result.changes} committed changes of 2 sources "
        f"(0 missing, 0 duplicated, 0 extra); the stream holds each of its "
        f"{result.stream_messages} messages once"
    )


def main(quick: bool, seed: int | None, out: Path | None, keep: bool) -> int:
    plan = QUICK if quick else LONG
    seed = seed if seed is not None else int(time.time()) % 1_000_000
    workdir = Path(tempfile.mkdtemp(prefix="cdc-chaos-js-"))
    result = Result(
        mode="jetstream-quick" if quick else "jetstream-long",
        seed=seed,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        git_commit=_git_commit(),
        workdir=str(workdir),
    )
    chaos = JetStreamChaos(plan, seed, workdir, result)
    code = run_and_report(chaos, result, verdict, out)
    print(
        f"faults: {result.fault_total} {result.faults}; records {result.records} "
        f"({result.records_before_drain} before the drain), changes {result.changes}; stream "
        f"{result.stream_messages} messages, {result.stream_distinct_ids} distinct ids; chain "
        f"over {result.chain_checked}: {result.chain_problem or 'intact'}; chaos "
        f"{result.chaos_s:.0f}s, drain {result.drain_s:.0f}s, total {result.duration_s:.0f}s",
        flush=True,
    )
    finish_report(result, keep, lambda line: print(line, flush=True))
    return code
