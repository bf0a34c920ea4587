"""6. Web: the monitor's and the dashboard's API through HTTP, on the query benchmark's store.

The store is filled as the ``queries`` part fills it (``INSERT ... SELECT generate_series``
shaped by examples/platform.toml), and its rollups are counted from those records once, as the
sink would have written them, the closed days folded as ``cdc partitions`` would have. ``cdc
serve`` runs as a subprocess (its own interpreter, as users run it) reading through the pool;
the client is httpx on the same machine. Measured:

* the first page of the monitor (100 records) with no filter, with each single filter, and
  with full-text search: p50/p99 per request, at the client, body read;
* the dashboard's data for 30 days: ``/api/stats?since=30d`` and ``/api/health``, p99;
* live: records written into the store at ``web_live_rate`` per second (batches every 100 ms,
  as the sink writes them), each one's delay from its commit to its arrival on an open
  ``/api/live`` stream;
* export: ``/api/activity/export?format=jsonl`` of ``web_export_rows`` rows: rows per second
  and the server's resident memory (VmRSS sampled every 50 ms, and VmHWM) before and during.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg

from bench.cdc_process import SLOT, cdc_command, cdc_setup
from bench.context import BenchContext, log, target
from bench.platform_db import create_platform_db
from bench.sections import queries as query_section
from bench.server import drop_slot
from bench.stats import percentiles
from cdc.control.daily_rollups import closed_days_end, fold_days

DBNAME = "web"
PAGE_P99_MS = 50.0
DASHBOARD_P99_MS = 100.0
LIVE_DELAY_S = 1.0
EXPORT_ROWS_PER_S = 50_000.0
TOKEN = "bench-web-token"  # a made-up token for a throwaway server
LIVE_BATCH_INTERVAL_S = 0.1


def run(ctx: BenchContext) -> dict[str, Any]:
    dsn = create_platform_db(ctx.server, DBNAME)
    cdc_setup(dsn)
    try:
        with ctx.server.connect(DBNAME) as conn:
            drop_slot(conn, SLOT)
            fill = query_section._fill(conn, ctx.sizes.query_records)
            rollup_rows = _count_rollups(conn)
            params = _parameters(conn)
        server = _Serve(dsn, ctx)
        try:
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
            ) as client:
                pages = _pages(client, params, ctx.sizes.web_requests)
                dashboard = _dashboard(client, ctx.sizes.web_requests)
                live = _live(client, ctx, dsn)
                export = _export(client, server.pid, ctx.sizes.web_export_rows)
        finally:
            server.stop()
    finally:
        ctx.server.drop_database(DBNAME)
    for name, result in pages.items():
        log.info("web %-18s p50 %.1f ms p99 %.1f ms", name, result["p50"], result["p99"])
    targets = [
        target(f"web p99: {name}", result["p99"], "<=", PAGE_P99_MS, "ms")
        for name, result in pages.items()
    ]
    targets.append(
        target("web p99: dashboard 30d", dashboard["both"]["p99"], "<=", DASHBOARD_P99_MS, "ms")
    )
    targets.append(target("web live delay p99", live["delay_s"]["p99"], "<=", LIVE_DELAY_S, "s"))
    targets.append(
        target("web export rows/s", export["rows_per_s"], ">=", EXPORT_ROWS_PER_S, "rows/s")
    )
    return {
        "status": "ok",
        "fill": {**fill, "rollup_rows": rollup_rows},
        "pages_ms": pages,
        "dashboard_ms": dashboard,
        "live": live,
        "export": export,
        "targets": targets,
    }


class _Serve:
    """``cdc serve`` on a free port, as a subprocess."""

    def __init__(self, dsn: str, ctx: BenchContext) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, CDC_SOURCE_DSN=dsn, CDC_WEB_TOKEN=TOKEN)
        env.pop("CDC_SINK_DSN", None)
        env.pop("CDC_WEB_DSN", None)
        self._log = open(ctx.logdir / "web-serve.log", "wb")  # noqa: SIM115 (closed in stop)
        self._process = subprocess.Popen(
            cdc_command("serve", "--port", str(self.port)),
            env=env,
            stdout=self._log,
            stderr=self._log,
        )
        self.pid = self._process.pid
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/login", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("cdc serve did not answer within 30 s (see logs/web-serve.log)")

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()


def _count_rollups(conn: psycopg.Connection[Any]) -> int:
    """The per-minute and per-hour rollups of the filled records, as the sink writes them."""
    total = 0
    for table, grain in (("activity_per_minute", "minute"), ("activity_per_hour", "hour")):
        cur = conn.execute(
            f"INSERT INTO activity.{table} "  # noqa: S608 (two fixed names)
            f"SELECT date_trunc('{grain}', occurred_at), source, category, severity, "
            "coalesce(schema_name, ''), coalesce(table_name, ''), operation, count(*) "
            "FROM activity.records GROUP BY 1, 2, 3, 4, 5, 6, 7"
        )
        total += cur.rowcount
    # and the closed days folded into the per-day rollups, as the operator's daily
    # `cdc partitions` does (cdc/control/daily_rollups.py)
    list(fold_days(conn, "activity", closed_days_end(datetime.now(UTC))))
    conn.execute("ANALYZE activity.activity_per_minute, activity.activity_per_hour")
    conn.execute("ANALYZE activity.activity_per_day")
    return total


def _parameters(conn: psycopg.Connection[Any]) -> dict[str, list[dict[str, str]]]:
    """Values of each filter drawn from the data (busy ones come up more, as in real use)."""
    rows = conn.execute(
        "SELECT entity_type, entity_id, actor_id, category, severity, operation, schema_name, "
        "table_name, action, source FROM activity.records TABLESAMPLE SYSTEM (1) LIMIT 2000"
    ).fetchall()
    rng = random.Random(11)
    pick = [rng.choice(rows) for _ in range(200)]
    return {
        "no filter": [{}],
        "entity": [{"entity_type": r[0], "entity_id": r[1]} for r in pick if r[1]],
        "actor": [{"actor": r[2]} for r in pick if r[2]],
        "category": [{"category": r[3]} for r in pick],
        "severity": [{"severity": r[4]} for r in pick],
        "min severity": [{"min_severity": "warning"}],
        "operation": [{"operation": r[5]} for r in pick],
        "table": [{"table": f"{r[6]}.{r[7]}"} for r in pick if r[7]],
        "action": [{"action": r[8]} for r in pick],
        "source": [{"source": r[9]} for r in pick],
        "since 1h": [{"since": "1h"}],
        "full text": [{"search": f'"{r[0]} {r[1]}"'} for r in pick if r[1]],
    }


def _timed(client: httpx.Client, path: str, params: dict[str, Any]) -> float:
    started = time.perf_counter()
    response = client.get(path, params=params)
    response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{path} {params}: {response.status_code} {response.text[:200]}")
    return elapsed


def _pages(
    client: httpx.Client, params: dict[str, list[dict[str, str]]], requests: int
) -> dict[str, dict[str, float]]:
    """The first page of each filter, the filters interleaved."""
    timings: dict[str, list[float]] = {name: [] for name in params}
    for i in range(requests):
        for name, choices in params.items():
            query = {**choices[i % len(choices)], "limit": 100}
            timings[name].append(_timed(client, "/api/activity", query))
    return {name: percentiles(values).as_json() for name, values in timings.items()}


def _dashboard(client: httpx.Client, requests: int) -> dict[str, dict[str, float]]:
    stats, health, both = [], [], []
    for _ in range(requests):
        a = _timed(client, "/api/stats", {"since": "30d"})
        b = _timed(client, "/api/health", {})
        stats.append(a)
        health.append(b)
        both.append(a + b)
    return {
        "stats_30d": percentiles(stats).as_json(),
        "health": percentiles(health).as_json(),
        "both": percentiles(both).as_json(),
    }


def _live(client: httpx.Client, ctx: BenchContext, dsn: str) -> dict[str, Any]:
    """Write records at the rate into the store; time each from commit to the open stream."""
    rate = ctx.sizes.web_live_rate
    seconds = ctx.sizes.web_live_seconds
    committed: dict[str, float] = {}
    arrived: dict[str, float] = {}
    head = client.get("/api/activity", params={"limit": 1}).json()["live_from"]
    stop = threading.Event()
    ready = threading.Event()

    def listen() -> None:
        try:
            with client.stream("GET", "/api/live", params={"from": head}, timeout=60) as stream:
                ready.set()
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        now = time.monotonic()
                        for record in json.loads(line.removeprefix("data: ")):
                            arrived.setdefault(record["position"], now)
                    if stop.is_set() and len(arrived) >= len(committed):
                        return
        except httpx.HTTPError:
            # the stream waits for its next line when the run is over; the client closing
            # at the end of the benchmark breaks it: nothing was lost
            if not stop.is_set():
                raise

    listener = threading.Thread(target=listen, name="bench-web-live", daemon=True)
    listener.start()
    ready.wait(10)
    per_batch = max(1, round(rate * LIVE_BATCH_INTERVAL_S))
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT max(commit_lsn) FROM activity.records").fetchone()
        lsn = int(str(row[0]).split("/")[0], 16) << 32 | int(str(row[0]).split("/")[1], 16)
        next_at = time.monotonic()
        end = next_at + seconds
        while time.monotonic() < end:
            lsn += 0x100
            text = f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
            with conn.transaction():
                conn.execute(
                    "INSERT INTO activity.records (occurred_at, source, operation, action, "
                    "category, severity, schema_name, table_name, entity_type, entity_id, "
                    "new, summary, commit_lsn, seq) "
                    "SELECT now(), 'database', 'insert', 'bench.live', 'bench', 'info', "
                    "'public', 'bench', 'bench', g::text, jsonb_build_object('id', g), "
                    "'bench ' || g, %s::pg_lsn, g FROM generate_series(0, %s - 1) g",
                    (text, per_batch),
                )
            done = time.monotonic()
            for seq in range(per_batch):
                committed[f"{text},{seq}"] = done
            next_at += LIVE_BATCH_INTERVAL_S
            time.sleep(max(0.0, next_at - time.monotonic()))
    deadline = time.monotonic() + 10
    while len(arrived) < len(committed) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    delays = [arrived[key] - at for key, at in committed.items() if key in arrived]
    return {
        "offered_records_per_s": rate,
        "seconds": seconds,
        "written": len(committed),
        "arrived": sum(1 for key in committed if key in arrived),
        "delay_s": percentiles(delays).as_json() if delays else {"p50": None, "p99": None},
    }


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _export(client: httpx.Client, pid: int, rows: int) -> dict[str, Any]:
    before = _rss_kib(pid)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(_rss_kib(pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = 0
    size = 0
    started = time.perf_counter()
    with client.stream(
        "GET", "/api/activity/export", params={"format": "jsonl", "limit": rows}, timeout=600
    ) as response:
        for chunk in response.iter_bytes():
            lines += chunk.count(b"\n")
            size += len(chunk)
    elapsed = time.perf_counter() - started
    stop.set()
    sampler.join()
    return {
        "rows": lines,
        "mb": round(size / 2**20, 1),
        "seconds": round(elapsed, 2),
        "rows_per_s": lines / elapsed if elapsed else 0.0,
        "server_rss_mib_before": round(before / 1024, 1),
        "server_rss_mib_peak_during": round(max(samples or [before]) / 1024, 1),
        "server_vmhwm_mib": round(_rss_kib(pid, "VmHWM") / 1024, 1),
        "at": datetime.now(UTC).isoformat(),
    }
