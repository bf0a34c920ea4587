"""``python -m bench --compare REF``: two versions of the daemon on the same changes, in one run.

Every lever is judged by this: the commit before it (REF) against this checkout (head), on the
same throwaway server, interleaved round by round (the order rotates), so that the shared
machine's load falls on both alike. What is compared, as ratios head ÷ ref:

* **drain**: one source database per round; before its backlog is written, each version gets
  its own replication slot (``cdc setup`` of that version, with its own config and its own sink
  database) and ``pg_recvlogical`` a copy, so all three drain the identical changes. Per version:
  changes/s, the ratio to ``pg_recvlogical``, the daemon's CPU per change (``wait4`` rusage,
  minus the CPU of a drain with nothing to do: interpreter start, imports, connections), the
  sink backend's and the walsender's CPU per change (``/proc`` of their pids), peak RSS.
* **records**: the two sinks are compared column by column (an md5 of each column over all
  records in (commit_lsn, seq) order); a column that differs is named.
* **write path**: the platform's pgbench mix on one database with no daemon, with ref's daemon
  and with head's (each caught up before its timed window): TPS ratios, and the daemon's CPU
  per change under that load.

Results: ``compare.json`` in ``--out`` and a table on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from bench.backlog import build_backlog
from bench.cdc_process import parse_summary
from bench.code_tree import CheckedOut, CodeTree, this_checkout
from bench.context import BenchContext, log, platform_change_counts, rotated
from bench.machine import machine_facts
from bench.platform_db import SeedCounts, build_template, create_platform_db
from bench.process_probe import UsageSampler, read_usage
from bench.recvlogical import run_pg_recvlogical
from bench.server import BenchServer
from bench.sizes import Sizes
from bench.slots import copy_slot, insert_lsn, sink_transactions
from bench.stats import median, ratio
from bench.workload import PLATFORM_MIX, PgbenchOptions, run_pgbench

SIDES: tuple[str, ...] = ("ref", "head")
SOURCE_DB = "cmp_source"
RECVLOGICAL_SLOT = "cmp_recvlogical"
SINK_BACKEND = "activity-cdc sink"  # application_name of the daemon's sink connection
COMPARE_JSON = "compare.json"

# Columns that differ between any two runs of one version: when the row was written, the
# hash chain, which covers recorded_at (sql/migrations/0011_hash_chain.sql), and the source,
# '<system id>:<slot>', and each side drains its own slot (0025_record_sources.sql).
_RUN_DEPENDENT = {"recorded_at", "prev_hash", "hash", "source_id"}


def slot_of(side: str) -> str:
    return f"cmp_{side}"


def sink_db_of(side: str) -> str:
    return f"cmp_sink_{side}"


@dataclass
class Side:
    tree: CodeTree
    config: Path

    @property
    def label(self) -> str:
        return self.tree.label


class BackendCpu:
    """CPU seconds of a daemon's server processes (its sink backend, its walsender), read from
    /proc every 20 ms while it runs: a backend's counters vanish with it, so the last reading
    stands (it misses at most the final 20 ms)."""

    def __init__(self, server: BenchServer, *, sink_db: str, slot: str) -> None:
        self._server = server
        self._sink_db = sink_db
        self._slot = slot
        self.sink_s: dict[int, float] = {}
        self.walsender_s: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backend-cpu", daemon=True)

    def start(self) -> BackendCpu:
        self._thread.start()
        return self

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        self._thread.join()
        return self.totals()

    def totals(self) -> tuple[float, float]:
        """CPU seconds so far: the sink backends', the walsenders'."""
        return sum(dict(self.sink_s).values()), sum(dict(self.walsender_s).values())

    def _run(self) -> None:
        with self._server.connect() as conn:
            while not self._stop.is_set():
                sinks = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                    (self._sink_db, SINK_BACKEND),
                ).fetchall()
                senders = conn.execute(
                    "SELECT active_pid FROM pg_replication_slots "
                    "WHERE slot_name = %s AND active_pid IS NOT NULL",
                    (self._slot,),
                ).fetchall()
                for rows, seen in ((sinks, self.sink_s), (senders, self.walsender_s)):
                    for (pid,) in rows:
                        usage = read_usage(pid)
                        if usage is not None:
                            seen[pid] = usage.cpu_s
                self._stop.wait(0.02)


@dataclass(frozen=True)
class DaemonRun:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    changes: int | None
    records: int | None
    output: str


class Daemon:
    """One version's ``cdc run [--drain]`` as a subprocess."""

    def __init__(self, side: Side, source_dsn: str, sink_dsn: str, log_path: Path) -> None:
        self.side = side
        self.env = side.tree.env(CDC_SOURCE_DSN=source_dsn, CDC_SINK_DSN=sink_dsn)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.sampler: UsageSampler | None = None
        self._log: IO[bytes] | None = None
        self._started = 0.0

    def start(self, *, drain: bool) -> Daemon:
        args = ["run", "--drain"] if drain else ["run"]
        self._log = self.log_path.open("ab")
        self._started = time.monotonic()
        self.proc = subprocess.Popen(
            self.side.tree.command(self.side.config, *args),
            env=self.env,
            cwd=self.side.tree.path,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.sampler = UsageSampler(self.proc.pid).start()
        return self

    def cpu_now(self) -> float:
        assert self.sampler is not None
        return self.sampler.last.cpu_s if self.sampler.last else 0.0

    def finish(self, *, terminate: bool = False, timeout_s: float = 3600) -> DaemonRun:
        assert self.proc is not None and self.sampler is not None and self._log is not None
        if terminate:
            self.proc.terminate()
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.proc.kill()
                _, status, rusage = os.wait4(self.proc.pid, 0)
                break
            time.sleep(0.005)
        wall_s = time.monotonic() - self._started
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        usage = self.sampler.stop()
        self._log.close()
        output = self.log_path.read_text(errors="replace")
        if self.proc.returncode != 0:
            tail = "\n".join(output.splitlines()[-8:])
            raise RuntimeError(f"{self.side.label}: cdc run exited {self.proc.returncode}: {tail}")
        summary = parse_summary(output)
        return DaemonRun(
            wall_s=wall_s,
            cpu_s=float(rusage.ru_utime + rusage.ru_stime),
            peak_rss_mb=round(usage.peak_rss_bytes / 2**20, 1) if usage else 0.0,
            changes=summary.changes if summary else None,
            records=summary.records if summary else None,
            output=output,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.sampler is not None:
            self.sampler.stop()
        if self._log is not None and not self._log.closed:
            self._log.close()


def run(ref: str, sizes: Sizes, out: Path, *, parts: list[str], locale: str = "C") -> int:
    """Compare ``ref`` with this checkout; write compare.json and print the ratios."""
    out.mkdir(parents=True, exist_ok=True)
    logdir = out / "logs"
    logdir.mkdir(exist_ok=True)
    started = time.monotonic()
    head = this_checkout()
    results: dict[str, Any] = {
        "schema": 1,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sizes": dict(vars(sizes)),
    }
    with CheckedOut(ref) as ref_tree, tempfile.TemporaryDirectory(prefix="cdc-cmp-") as tmp:
        results["commits"] = {"ref": ref_tree.commit, "head": head.commit}
        log.info("compare: ref %s against head %s", ref_tree.commit, head.commit)
        for tree in (ref_tree, head):
            tree.build()
        sides = {
            tree.label: Side(tree, tree.config_with_slot(slot_of(tree.label), Path(tmp)))
            for tree in (ref_tree, head)
        }
        server = BenchServer(locale=locale)
        try:
            server.start()
            results["machine"] = machine_facts(server)
            results["locale"] = locale
            seed = SeedCounts.for_users(sizes.seed_users)
            build_template(server, seed)
            ctx = BenchContext(server=server, sizes=sizes, seed=seed, logdir=logdir)
            if "drain" in parts:
                results["drain"] = _drain(ctx, sides)
                _write(out, results)
            if "write" in parts:
                results["write"] = _write_path(ctx, sides)
        finally:
            server.stop()
    results["duration_s"] = round(time.monotonic() - started, 1)
    _write(out, results)
    print(render(results))
    print(f"results: {out / COMPARE_JSON}")
    return 0


def _write(out: Path, results: dict[str, Any]) -> None:
    path = out / COMPARE_JSON
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1), encoding="utf-8")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------
# Drain
# ---------------------------------------------------------------------------------------------


def _fresh_databases(ctx: BenchContext, sides: dict[str, Side]) -> dict[str, str]:
    """The source (a copy of the seeded platform) and one empty sink database per version,
    each version set up by its own ``cdc setup``. Returns the DSNs by name."""
    dsns = {"source": create_platform_db(ctx.server, SOURCE_DB)}
    for label, side in sides.items():
        dsns[label] = ctx.server.create_database(sink_db_of(label))
        done = subprocess.run(
            side.tree.command(side.config, "setup"),
            env=side.tree.env(CDC_SOURCE_DSN=dsns["source"], CDC_SINK_DSN=dsns[label]),
            cwd=side.tree.path,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{label}: cdc setup failed: {done.stderr.strip()[-2000:]}")
    return dsns


def _drop_databases(ctx: BenchContext) -> None:
    ctx.server.drop_database(SOURCE_DB)
    for label in SIDES:
        ctx.server.drop_database(sink_db_of(label))


def _drain(ctx: BenchContext, sides: dict[str, Side]) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    records_check: dict[str, Any] = {}
    for round_index in range(ctx.sizes.rounds):
        dsns = _fresh_databases(ctx, sides)
        try:
            floors = {
                label: _drain_once(ctx, side, dsns, f"floor-r{round_index}").cpu_s
                for label, side in sides.items()
            }
            with ctx.server.connect(SOURCE_DB) as conn:
                copy_slot(conn, slot_of("head"), RECVLOGICAL_SLOT)
                backlog = build_backlog(
                    ctx,
                    conn,
                    SOURCE_DB,
                    dsns["source"],
                    slot_of("head"),
                    min_changes=ctx.sizes.drain_changes,
                )
            result: dict[str, Any] = {"round": round_index, "consumers": {}}
            for name in rotated((*SIDES, "pg_recvlogical"), round_index):
                if name == "pg_recvlogical":
                    recv = run_pg_recvlogical(
                        ctx.server.bindir,
                        dsns["source"],
                        slot=RECVLOGICAL_SLOT,
                        publication="activity_cdc",
                        end_lsn=backlog.end_lsn,
                    )
                    result["consumers"][name] = {"wall_s": round(recv.wall_s, 3)}
                else:
                    result["consumers"][name] = _timed_drain(
                        ctx, sides[name], dsns, f"r{round_index}", floors[name]
                    )
                log.info(
                    "compare drain round %d %-14s %.2f s",
                    round_index,
                    name,
                    result["consumers"][name]["wall_s"],
                )
            _per_change(result, backlog.row_changes)
            rounds.append(result)
            if round_index == ctx.sizes.rounds - 1:
                records_check = compare_records(ctx.server)
        finally:
            _drop_databases(ctx)
    return _summarise_drain(rounds, records_check)


def _drain_once(ctx: BenchContext, side: Side, dsns: dict[str, str], label: str) -> DaemonRun:
    daemon = Daemon(
        side, dsns["source"], dsns[side.label], ctx.logdir / f"compare-{side.label}-{label}.log"
    )
    try:
        return daemon.start(drain=True).finish()
    finally:
        daemon.kill()


def _timed_drain(
    ctx: BenchContext, side: Side, dsns: dict[str, str], label: str, floor_cpu_s: float
) -> dict[str, Any]:
    watcher = BackendCpu(ctx.server, sink_db=sink_db_of(side.label), slot=slot_of(side.label))
    watcher.start()
    try:
        done = _drain_once(ctx, side, dsns, label)
    finally:
        sink_cpu_s, walsender_cpu_s = watcher.stop()
    with ctx.server.connect(sink_db_of(side.label)) as conn:
        row = conn.execute("SELECT count(*) FROM activity.records").fetchone()
    records = int(row[0]) if row else 0
    return {
        "wall_s": round(done.wall_s, 3),
        "changes": done.changes,
        "records": records,
        "cpu_s": round(done.cpu_s, 3),
        "floor_cpu_s": round(floor_cpu_s, 3),
        "sink_backend_cpu_s": round(sink_cpu_s, 3),
        "walsender_cpu_s": round(walsender_cpu_s, 3),
        "peak_rss_mb": done.peak_rss_mb,
    }


def _per_change(result: dict[str, Any], table_changes: int) -> None:
    """Rates and CPU per change; the daemons' own count of changes is exact (the table
    statistics only approximate it), and both must have counted the same."""
    consumers = result["consumers"]
    counts = {consumers[label]["changes"] for label in SIDES} - {None}
    if len(counts) > 1:
        log.warning("the daemons counted different changes: %s", sorted(counts))
    changes = max(counts) if counts else table_changes
    result["row_changes"] = changes
    for consumer in consumers.values():
        consumer["changes_per_s"] = round(changes / consumer["wall_s"])
    base = consumers["pg_recvlogical"]["changes_per_s"]
    for label in SIDES:
        side = consumers[label]
        side["ratio_to_pg_recvlogical"] = round(ratio(side["changes_per_s"], base), 4)
        side["daemon_cpu_us_per_change"] = round(
            (side["cpu_s"] - side["floor_cpu_s"]) / changes * 1e6, 2
        )
        side["sink_backend_cpu_us_per_record"] = round(
            side["sink_backend_cpu_s"] / max(side["records"], 1) * 1e6, 2
        )
        side["walsender_cpu_us_per_change"] = round(side["walsender_cpu_s"] / changes * 1e6, 2)


DRAIN_MEASURES: tuple[tuple[str, str], ...] = (
    ("changes_per_s", "drain, changes/s"),
    ("ratio_to_pg_recvlogical", "drain ÷ pg_recvlogical"),
    ("daemon_cpu_us_per_change", "daemon CPU µs/change"),
    ("sink_backend_cpu_us_per_record", "sink backend CPU µs/record"),
    ("walsender_cpu_us_per_change", "walsender CPU µs/change"),
    ("peak_rss_mb", "daemon peak RSS MB"),
)


def _summarise_drain(rounds: list[dict[str, Any]], records: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key, _ in DRAIN_MEASURES:
        values = {label: median([r["consumers"][label][key] for r in rounds]) for label in SIDES}
        # The ratio of each round (both ran minutes apart at most), then their median.
        per_round = [ratio(r["consumers"]["head"][key], r["consumers"]["ref"][key]) for r in rounds]
        summary[key] = {**values, "head_to_ref": round(median(per_round), 4)}
    summary["pg_recvlogical_changes_per_s"] = median(
        [r["consumers"]["pg_recvlogical"]["changes_per_s"] for r in rounds]
    )
    return {"summary": summary, "records": records, "rounds": rounds}


def compare_records(server: BenchServer) -> dict[str, Any]:
    """Whether both sinks hold the same records: an md5 per column, over (commit_lsn, seq)."""
    digests: dict[str, dict[str, str]] = {}
    for label in SIDES:
        with server.connect(sink_db_of(label)) as conn:
            columns = [
                name
                for (name,) in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = 'activity' AND table_name = 'records' "
                    "ORDER BY ordinal_position"
                ).fetchall()
            ]
            digests[label] = {}
            for column in columns:
                if column in _RUN_DEPENDENT:
                    continue
                row = conn.execute(
                    sql.SQL(
                        "SELECT md5(string_agg(coalesce({}::text, '<null>'), E'\\x1f' "
                        "ORDER BY commit_lsn, seq)) FROM activity.records"
                    ).format(sql.Identifier(column))
                ).fetchone()
                digests[label][column] = str(row[0]) if row else ""
    ref, head = digests["ref"], digests["head"]
    shared = [column for column in ref if column in head]
    return {
        "identical_columns": [column for column in shared if ref[column] == head[column]],
        "different_columns": [column for column in shared if ref[column] != head[column]],
        "only_ref": [column for column in ref if column not in head],
        "only_head": [column for column in head if column not in ref],
    }


# ---------------------------------------------------------------------------------------------
# Write path
# ---------------------------------------------------------------------------------------------

WRITE_MODES: tuple[str, ...] = ("none", *SIDES)


# CPU per source row change while the write path runs, per daemon (median of rounds)
WRITE_CPU_MEASURES = {
    "daemon_cpu_us_per_change": "daemon CPU µs/change (write)",
    "walsender_cpu_us_per_change": "walsender CPU µs/change (write)",
    "sink_backend_cpu_us_per_change": "sink backend µs/change (write)",
    "records_per_sink_transaction": "records per sink txn (write)",
}


def _write_path(ctx: BenchContext, sides: dict[str, Side]) -> dict[str, Any]:
    dsns = _fresh_databases(ctx, sides)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in WRITE_MODES}
    try:
        # Warm caches and plans once per mode; not recorded.
        for mode in WRITE_MODES:
            _write_mode(ctx, sides, dsns, mode, seconds=min(3.0, ctx.sizes.write_seconds))
        for round_index in range(ctx.sizes.write_rounds):
            for mode in rotated(WRITE_MODES, round_index):
                result = _write_mode(ctx, sides, dsns, mode, seconds=ctx.sizes.write_seconds)
                runs[mode].append(result)
                log.info("compare write round %d %-5s %7.1f TPS", round_index, mode, result["tps"])
    finally:
        _drop_databases(ctx)
    rounds = ctx.sizes.write_rounds
    summary: dict[str, Any] = {
        "tps": {mode: median([r["tps"] for r in runs[mode]]) for mode in WRITE_MODES},
    }
    for label in SIDES:
        summary[f"{label}_to_none"] = round(
            median([ratio(runs[label][i]["tps"], runs["none"][i]["tps"]) for i in range(rounds)]),
            4,
        )
    summary["head_to_ref"] = round(
        median([ratio(runs["head"][i]["tps"], runs["ref"][i]["tps"]) for i in range(rounds)]), 4
    )
    for key in WRITE_CPU_MEASURES:
        summary[key] = {label: median([r[key] for r in runs[label]]) for label in SIDES}
    return {"summary": summary, "runs": runs}


def _write_mode(
    ctx: BenchContext, sides: dict[str, Side], dsns: dict[str, str], mode: str, *, seconds: float
) -> dict[str, Any]:
    ctx.server.checkpoint()
    daemon: Daemon | None = None
    watcher: BackendCpu | None = None
    with ctx.server.connect(SOURCE_DB) as source:
        try:
            if mode != "none":
                side = sides[mode]
                daemon = Daemon(
                    side, dsns["source"], dsns[mode], ctx.logdir / f"compare-write-{mode}.log"
                ).start(drain=False)
                watcher = BackendCpu(ctx.server, sink_db=sink_db_of(mode), slot=slot_of(mode))
                watcher.start()
                _wait_caught_up(ctx, source, mode, daemon)
            changes_before = platform_change_counts(source)
            cpu_before = daemon.cpu_now() if daemon else 0.0
            time.sleep(0.05)  # the watcher's next reading, after the marker's catch-up
            servers_before = watcher.totals() if watcher else (0.0, 0.0)
            written_before = _sink_transactions(ctx, mode) if daemon else (0, 0)
            result = run_pgbench(
                ctx.server.bindir,
                dsns["source"],
                PLATFORM_MIX,
                ctx.pgbench_variables(),
                PgbenchOptions(
                    clients=ctx.sizes.clients,
                    duration_s=seconds,
                    rate_tps=ctx.sizes.write_rate or None,
                ),
            )
            cpu_after = daemon.cpu_now() if daemon else 0.0
            changes = platform_change_counts(source) - changes_before
            run = {"tps": round(result.tps, 1), "row_changes": changes}
            if daemon is not None and watcher is not None:
                run["daemon_cpu_us_per_change"] = round(
                    (cpu_after - cpu_before) / max(changes, 1) * 1e6, 2
                )
                run["catch_up_s"] = round(_wait_caught_up(ctx, source, mode, daemon), 3)
                # the servers' CPU through the catch-up: all of this run's changes decoded
                # and written (the marker's own is one change more)
                time.sleep(0.05)
                sink_s, walsender_s = watcher.stop()
                run["sink_backend_cpu_us_per_change"] = round(
                    (sink_s - servers_before[0]) / max(changes, 1) * 1e6, 2
                )
                run["walsender_cpu_us_per_change"] = round(
                    (walsender_s - servers_before[1]) / max(changes, 1) * 1e6, 2
                )
                records, transactions = _sink_transactions(ctx, mode)
                run["records_per_sink_transaction"] = round(
                    (records - written_before[0]) / max(transactions - written_before[1], 1), 1
                )
                daemon.finish(terminate=True, timeout_s=120)
                daemon = None
        finally:
            if watcher is not None:
                watcher.stop()
            if daemon is not None:
                daemon.kill()
    return run


def _sink_transactions(ctx: BenchContext, mode: str) -> tuple[int, int]:
    with ctx.server.connect(sink_db_of(mode)) as sink:
        return sink_transactions(sink)


def _wait_caught_up(
    ctx: BenchContext, source: psycopg.Connection[Any], mode: str, daemon: Daemon
) -> float:
    """Commit a marker change and wait until that version's sink has recorded it."""
    started = time.monotonic()
    with source.transaction():
        marker = insert_lsn(source)
        source.execute(
            "UPDATE public.organizations SET metadata = metadata "
            "|| jsonb_build_object('bench_marker', clock_timestamp()) WHERE id = 1"
        )
    with ctx.server.connect(sink_db_of(mode)) as sink:
        while True:
            if daemon.proc is not None and daemon.proc.poll() is not None:
                raise RuntimeError(f"{mode}: cdc run exited early; see {daemon.log_path}")
            row = sink.execute(
                "SELECT coalesce(max(commit_lsn) >= %s::pg_lsn, false) FROM activity.records",
                (marker,),
            ).fetchone()
            if row and row[0]:
                return time.monotonic() - started
            if time.monotonic() - started > 900:
                raise RuntimeError(f"{mode}: the daemon did not catch up within 900 s")
            time.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    commits = results.get("commits", {})
    lines = [f"ref {commits.get('ref')}  vs  head {commits.get('head')}"]
    lines.append(f"{'measure':32} {'ref':>12} {'head':>12} {'head/ref':>9}")
    drain = results.get("drain")
    if drain:
        summary = drain["summary"]
        for key, name in DRAIN_MEASURES:
            item = summary[key]
            lines.append(
                f"{name:32} {_num(item['ref']):>12} {_num(item['head']):>12} "
                f"{item['head_to_ref']:>9.3f}"
            )
        lines.append(
            f"{'pg_recvlogical, changes/s':32} {_num(summary['pg_recvlogical_changes_per_s']):>12}"
        )
        records = drain["records"]
        differing = records["different_columns"] + records["only_ref"] + records["only_head"]
        lines.append(
            "records: identical"
            if not differing
            else f"records: DIFFER in {', '.join(differing)} "
            f"(same: {len(records['identical_columns'])} columns)"
        )
    write = results.get("write")
    if write:
        summary = write["summary"]
        tps = summary["tps"]
        lines.append(
            f"{'write TPS (none ' + _num(tps['none']) + ')':32} {_num(tps['ref']):>12} "
            f"{_num(tps['head']):>12} {summary['head_to_ref']:>9.3f}"
        )
        lines.append(
            f"{'write TPS ÷ none':32} {summary['ref_to_none']:>12.3f} "
            f"{summary['head_to_none']:>12.3f}"
        )
        for key, name in WRITE_CPU_MEASURES.items():
            cpu = summary.get(key)
            if cpu is not None:
                lines.append(
                    f"{name:32} {_num(cpu['ref']):>12} {_num(cpu['head']):>12} "
                    f"{ratio(cpu['head'], cpu['ref']):>9.3f}"
                )
    return "\n".join(lines)


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
