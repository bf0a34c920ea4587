"""Profile: where ``cdc run --drain`` spends its time per change, on both sides of the wire.

The daemon drains a backlog of the platform workload under py-spy (sampling from outside,
``--nonblocking``, idle samples included, all threads); its stacks are folded into pipeline
stages (bench/profile_stages.py). The server processes that work for it are measured from
/proc at the same time: the walsender (decoding WAL into pgoutput) and the sink's backend
(COPY into the store: heap, indexes, partition routing, rollups, commit). Together: the CPU
each side spends per change, and which one the pipeline waits for. Last, the records it wrote
are written again into copies of the store with fewer indexes (bench/store_write_cost.py), to
say which part of the server's work is which.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.backlog import build_backlog
from bench.cdc_process import SLOT, cdc_command, cdc_env, cdc_setup, parse_summary
from bench.chain_cost import measure_chain_cost
from bench.context import BenchContext, log
from bench.platform_db import create_platform_db
from bench.process_probe import read_usage
from bench.profile_stages import read_stages
from bench.store_write_cost import measure_store_write_cost

RATE_HZ = 200
DBNAME = "profile"
STORE_COST_ROWS = 100_000  # records re-written per store variant (bench/store_write_cost.py)


class BackendWatch:
    """CPU seconds of the database's walsender and sink backend, sampled while they live."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.cpu_s: dict[str, float] = {}
        self._pids: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backend-watch", daemon=True)

    def start(self) -> BackendWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                for pid, role in conn.execute(
                    "SELECT pid, CASE WHEN backend_type = 'walsender' THEN 'walsender' "
                    "ELSE 'sink backend' END FROM pg_stat_activity WHERE datname = %s AND "
                    "(backend_type = 'walsender' OR application_name = 'activity-cdc sink')",
                    (DBNAME,),
                ).fetchall():
                    self._pids[pid] = role
                for pid, role in self._pids.items():
                    usage = read_usage(pid)
                    if usage is not None:
                        self.cpu_s[role] = usage.cpu_s
                self._stop.wait(0.05)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.cpu_s


def _py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def run(ctx: BenchContext) -> dict[str, Any]:
    py_spy = _py_spy()
    if py_spy is None:
        raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
    dsn = create_platform_db(ctx.server, DBNAME)
    cdc_setup(dsn)
    raw = ctx.logdir / "profile-drain.txt"
    try:
        with ctx.server.connect(DBNAME) as conn:
            backlog = build_backlog(
                ctx, conn, DBNAME, dsn, SLOT, min_changes=ctx.sizes.profile_changes
            )
        watch = BackendWatch(ctx.server.dsn()).start()
        started = time.monotonic()
        done = subprocess.run(
            [
                py_spy,
                "record",
                "--format",
                "raw",
                "--output",
                str(raw),
                "--rate",
                str(RATE_HZ),
                "--threads",
                "--idle",
                "--nonblocking",
                "--",
                *cdc_command("run", "--drain"),
            ],
            env=cdc_env(dsn),
            capture_output=True,
            text=True,
            check=False,
        )
        wall_s = time.monotonic() - started
        backend_cpu = watch.stop()
        with ctx.server.connect(DBNAME) as conn:
            store_cost = measure_store_write_cost(conn, max_rows=STORE_COST_ROWS)
        chain_cost = measure_chain_cost(ctx.server.dsn(DBNAME), max_rows=STORE_COST_ROWS, rounds=3)
    finally:
        ctx.server.drop_database(DBNAME)
    (ctx.logdir / "profile-drain.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not raw.exists():
        raise RuntimeError(f"py-spy record failed (exit {done.returncode}): {done.stderr[-1500:]}")
    summary = parse_summary(done.stderr)
    changes = summary.changes if summary else backlog.row_changes
    stages, per_thread, hot = read_stages(raw)
    per_change_us = 1e6 / RATE_HZ / max(changes, 1)
    # CPU of the daemon itself = its samples that are not waits (py-spy's --idle samples).
    daemon_cpu_samples = sum(
        stage.samples for stage in stages if not stage.stage.startswith("wait")
    )
    result = {
        "status": "ok",
        "sampler": "py-spy (raw, --idle, --nonblocking)",
        "rate_hz": RATE_HZ,
        "row_changes": changes,
        "wall_s": round(wall_s, 2),
        "changes_per_s": round(changes / wall_s),
        "cpu_s": round(daemon_cpu_samples / RATE_HZ, 2),
        "stages": [
            {
                "thread": "main"
                if stage.thread == "MainThread"
                else "sink"
                if stage.thread == "activity-cdc-sink"
                else stage.thread,
                "stage": stage.stage,
                "us_per_change": round(stage.samples * per_change_us, 3),
                "share": round(stage.samples / max(per_thread[stage.thread], 1), 4),
            }
            for stage in stages
        ],
        "hot_functions_main_thread": [
            {"function": name, "us_per_change": round(samples * per_change_us, 3)}
            for name, samples in hot
        ],
        "server_cpu_us_per_change": {
            role: round(seconds * 1e6 / max(changes, 1), 2) for role, seconds in backend_cpu.items()
        },
        "store_write_cost": store_cost,
        "chain_cost": chain_cost,
        "raw_stacks": raw.name,
    }
    log.info(
        "profile: %d changes in %.1f s under py-spy; server CPU per change %s",
        changes,
        wall_s,
        result["server_cpu_us_per_change"],
    )
    return result
