"""1. Write path: the platform's transactions under three kinds of auditing, same run.

Three copies of the seeded platform, one per mode:

* ``none``: no auditing at all, the ceiling;
* ``triggers``: the 64 legacy audit triggers (``sql/demo/legacy_audit.sql``);
* ``cdc``: ``cdc setup`` (publication, REPLICA IDENTITY FULL, store, slot) and ``cdc run``
  streaming into the store of the same database while the workload runs.

Each round runs every mode once, in a rotated order, after a CHECKPOINT; the daemon is started
before its run and has caught up with all WAL (including the other modes') before pgbench
starts (a marker change committed then is recorded), so the timed window holds only the
workload and the daemon keeping up with it. It is stopped after it has caught up again; how far
behind it was when pgbench ended and how long it took to catch up are reported with the run.
"""

from __future__ import annotations

from typing import Any

from bench.cdc_process import SLOT, DaemonProcess, cdc_setup
from bench.context import BenchContext, log, platform_change_counts, rotated, target
from bench.platform_db import create_platform_db
from bench.slots import commit_marker, confirmed_flush, insert_lsn, lsn_bytes, wait_recorded
from bench.stats import median, ratio
from bench.workload import PLATFORM_MIX, PgbenchOptions, PgbenchResult, run_pgbench

MODES: tuple[str, ...] = ("none", "triggers", "cdc")
WARMUP_S = 3.0
TPS_TARGET = 0.90  # CDC keeps at least this share of the TPS without auditing


def run(ctx: BenchContext) -> dict[str, Any]:
    dsns = {
        "none": create_platform_db(ctx.server, "write_none"),
        "triggers": create_platform_db(ctx.server, "write_triggers", legacy_triggers=True),
        "cdc": create_platform_db(ctx.server, "write_cdc"),
    }
    cdc_setup(dsns["cdc"])
    warmup_s = min(WARMUP_S, ctx.sizes.write_seconds)
    for mode in MODES:  # warm caches and plans; not recorded
        _run_mode(ctx, mode, dsns[mode], seconds=warmup_s, label="warmup")
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for round_index in range(ctx.sizes.write_rounds):
        for mode in rotated(MODES, round_index):
            result = _run_mode(
                ctx, mode, dsns[mode], seconds=ctx.sizes.write_seconds, label=f"r{round_index}"
            )
            result["round"] = round_index
            runs[mode].append(result)
            log.info(
                "write path round %d %-8s %7.1f TPS  p50 %.2f ms  p99 %.2f ms",
                round_index,
                mode,
                result["tps"],
                result["latency_ms"]["p50"],
                result["latency_ms"]["p99"],
            )
    for name in dsns:
        ctx.server.drop_database(f"write_{name}")
    return _summarise(ctx, runs)


def _run_mode(
    ctx: BenchContext, mode: str, dsn: str, *, seconds: float, label: str
) -> dict[str, Any]:
    dbname = f"write_{mode}"
    ctx.server.checkpoint()
    daemon: DaemonProcess | None = None
    with ctx.server.connect(dbname) as conn:
        try:
            if mode == "cdc":
                daemon = DaemonProcess(dsn, ctx.logdir / f"write-cdc-{label}.log").start()
                daemon.wait_streaming(conn)
                wait_recorded(conn, commit_marker(conn))
            changes_before = platform_change_counts(conn)
            wal_before = insert_lsn(conn)
            cpu_before = daemon.usage_now() if daemon else None
            result = run_pgbench(
                ctx.server.bindir,
                dsn,
                PLATFORM_MIX,
                ctx.pgbench_variables(),
                PgbenchOptions(clients=ctx.sizes.clients, duration_s=seconds),
            )
            wal_after = insert_lsn(conn)
            cpu_after = daemon.usage_now() if daemon else None
            run = _describe(result)
            run["row_changes"] = platform_change_counts(conn) - changes_before
            run["wal_bytes_per_txn"] = round(
                lsn_bytes(conn, wal_after, wal_before) / max(result.transactions, 1)
            )
            if daemon is not None:
                # How far behind the daemon was when the workload stopped, and how long it
                # needed to catch up: it must keep up, not just not slow the writers down.
                run["daemon_lag_bytes_at_end"] = lsn_bytes(
                    conn, wal_after, confirmed_flush(conn, SLOT)
                )
                run["daemon_catch_up_s"] = round(wait_recorded(conn, commit_marker(conn)), 3)
                if cpu_before and cpu_after:
                    run["daemon_cpu_share"] = round(
                        (cpu_after.cpu_s - cpu_before.cpu_s) / max(result.duration_s, 1e-9), 3
                    )
                exit_ = daemon.stop()
                daemon = None
                run["daemon_peak_rss_mb"] = round(exit_.peak_rss_bytes / 2**20, 1)
                if exit_.returncode != 0:
                    raise RuntimeError(f"cdc run exited {exit_.returncode}: {exit_.stderr_tail}")
        finally:
            if daemon is not None:
                daemon.kill()
    return run


def _describe(result: PgbenchResult) -> dict[str, Any]:
    return {
        "tps": round(result.tps, 1),
        "transactions": result.transactions,
        "failed": result.failed,
        "duration_s": round(result.duration_s, 2),
        "latency_ms": result.latency_ms.as_json(),
    }


def _summarise(ctx: BenchContext, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for mode in MODES:
        mode_runs = runs[mode]
        summary[mode] = {
            "tps": round(median([r["tps"] for r in mode_runs]), 1),
            "p50_ms": round(median([r["latency_ms"]["p50"] for r in mode_runs]), 3),
            "p99_ms": round(median([r["latency_ms"]["p99"] for r in mode_runs]), 3),
            "changes_per_txn": round(
                median([r["row_changes"] / max(r["transactions"], 1) for r in mode_runs]), 2
            ),
            "wal_bytes_per_txn": round(median([r["wal_bytes_per_txn"] for r in mode_runs])),
        }
    # Ratios within a round (the modes of one round ran minutes apart), then their median.
    ratios: dict[str, float] = {}
    for mode in ("triggers", "cdc"):
        per_round = [
            ratio(mine["tps"], base["tps"])
            for mine, base in zip(runs[mode], runs["none"], strict=True)
        ]
        ratios[mode] = round(median(per_round), 4)
        summary[mode]["tps_ratio_per_round"] = [round(value, 4) for value in per_round]
    cdc_runs = runs["cdc"]
    summary["cdc"]["daemon_catch_up_s"] = median([r["daemon_catch_up_s"] for r in cdc_runs])
    summary["cdc"]["daemon_lag_bytes_at_end"] = median(
        [r["daemon_lag_bytes_at_end"] for r in cdc_runs]
    )
    summary["cdc"]["daemon_cpu_share"] = median([r.get("daemon_cpu_share", 0.0) for r in cdc_runs])
    return {
        "status": "ok",
        "workload": {
            "scripts": [{"script": name, "weight": weight} for name, weight in PLATFORM_MIX],
            "clients": ctx.sizes.clients,
            "seconds_per_run": ctx.sizes.write_seconds,
            "rounds": ctx.sizes.write_rounds,
        },
        "modes": summary,
        "ratios_to_none": ratios,
        "runs": runs,
        "targets": [
            target("write path: CDC TPS / no auditing", ratios["cdc"], ">=", TPS_TARGET, "ratio"),
        ],
        "compared": {"triggers_tps_ratio": ratios["triggers"]},
    }
