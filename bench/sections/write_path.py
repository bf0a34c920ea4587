"""1. Write path: the platform's transactions under four kinds of auditing, same run.

Four copies of the seeded platform, one per mode:

* ``none``: no auditing at all, the ceiling;
* ``triggers``: the 64 legacy audit triggers (``sql/demo/legacy_audit.sql``);
* ``cdc``: ``cdc setup`` (publication, REPLICA IDENTITY FULL, store, slot) and ``cdc run``
  streaming into the store of the same database while the workload runs;
* ``cdc_apart``: the same with the store in another database of the same cluster
  (``[sink] dsn``): the walsender skips the store's own WAL records before decoding them;
* ``recvlogical``: the same source set-up streamed by ``pg_recvlogical`` into /dev/null, the
  consumer that does nothing: its walsender's CPU per change is what the server's decoding
  alone costs at this load, a floor under any consumer's (issue 17's database-CPU target).

The consumers (the daemon, its sink, ``pg_recvlogical``) connect through the server's Unix
socket, as docs/operations.md tells a daemon beside its database to (until 2026-12-05 they used
TCP loopback, which cost the walsender ~25% more per change); pgbench, the application, keeps
TCP.

Each round runs every mode once, in a rotated order, after a CHECKPOINT; the daemon is started
before its run and has caught up with all WAL (including the other modes') before pgbench
starts (a marker change committed then is recorded), so the timed window holds only the
workload and the daemon keeping up with it. It is stopped after it has caught up again; how far
behind it was when pgbench ended and how long it took to catch up are reported with the run.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
from typing import Any

import psycopg

from bench.cdc_process import PUBLICATION, SLOT, DaemonProcess, cdc_setup
from bench.cluster_cpu import (
    backend_cpu_s,
    children,
    cluster_cpu_s,
    daemon_backends,
    postmaster_pid,
    wait_clients_gone,
)
from bench.context import BenchContext, log, platform_change_counts, rotated, target
from bench.platform_db import create_platform_db
from bench.process_probe import ProcessUsage
from bench.recvlogical import stream_pg_recvlogical
from bench.slots import (
    commit_marker,
    confirmed_flush,
    insert_lsn,
    lsn_bytes,
    sink_transactions,
    wait_recorded,
    wait_sent,
)
from bench.stats import median, ratio
from bench.workload import PLATFORM_MIX, PgbenchOptions, PgbenchResult, run_pgbench

MODES: tuple[str, ...] = ("none", "triggers", "cdc", "cdc_apart", "recvlogical")
CDC_MODES: tuple[str, ...] = ("cdc", "cdc_apart")
APART_SLOT = f"{SLOT}_apart"  # slot names are the cluster's: one per daemon
RECV_SLOT = f"{SLOT}_recv"
WARMUP_S = 3.0
TPS_TARGET = 0.90  # CDC keeps at least this share of the TPS without auditing
# The server CPU CDC costs per change (walsender + sink backend: what a user pays when the
# daemon runs on another host) is at most this share of what the triggers add (issue 17).
DATABASE_CPU_TARGET = 0.5


def run(ctx: BenchContext) -> dict[str, Any]:
    dsns = {
        "none": create_platform_db(ctx.server, "write_none"),
        "triggers": create_platform_db(ctx.server, "write_triggers", legacy_triggers=True),
        "cdc": create_platform_db(ctx.server, "write_cdc"),
        "cdc_apart": create_platform_db(ctx.server, "write_cdc_apart"),
        "recvlogical": create_platform_db(ctx.server, "write_recvlogical"),
    }
    store_apart = ctx.server.create_database(_store_db("cdc_apart"))
    cdc_setup(dsns["cdc"])
    cdc_setup(dsns["cdc_apart"], sink_dsn=store_apart, slot=APART_SLOT)
    cdc_setup(dsns["recvlogical"], slot=RECV_SLOT)  # its store stays empty
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
    ctx.server.drop_database(_store_db("cdc_apart"))
    return _summarise(ctx, runs)


def _store_db(mode: str) -> str:
    """The database of a CDC mode's store."""
    return "write_cdc_apart_store" if mode == "cdc_apart" else f"write_{mode}"


def _slot(mode: str) -> str:
    return {"cdc_apart": APART_SLOT, "recvlogical": RECV_SLOT}.get(mode, SLOT)


def _run_mode(
    ctx: BenchContext, mode: str, dsn: str, *, seconds: float, label: str
) -> dict[str, Any]:
    dbname = f"write_{mode}"
    ctx.server.checkpoint()
    daemon: DaemonProcess | None = None
    recvlogical: subprocess.Popen[bytes] | None = None
    floor_walsender_s = math.nan  # recvlogical: its walsender's CPU over the run
    store: psycopg.Connection[Any] | None = None  # where the mode's records are
    with contextlib.ExitStack() as stack, ctx.server.connect(dbname) as conn:
        try:
            if mode in CDC_MODES:
                daemon = DaemonProcess(
                    ctx.server.local_dsn(dbname),
                    ctx.logdir / f"write-{mode}-{label}.log",
                    sink_dsn=ctx.server.local_dsn(_store_db(mode)),
                    slot=_slot(mode),
                ).start()
                daemon.wait_streaming(conn)
                store = stack.enter_context(ctx.server.connect(_store_db(mode)))
                wait_recorded(store, commit_marker(conn))
            if mode == "recvlogical":
                recvlogical = stream_pg_recvlogical(
                    ctx.server.bindir,
                    ctx.server.local_dsn(dbname),
                    slot=RECV_SLOT,
                    publication=PUBLICATION,
                )
                wait_sent(conn, RECV_SLOT, commit_marker(conn))
            postmaster = postmaster_pid(conn)
            known = children(postmaster)  # everything but pgbench's backends-to-be
            backends = (
                daemon_backends(conn, dbname=_store_db(mode), slot=_slot(mode))
                if daemon or recvlogical
                else {}
            )
            changes_before = platform_change_counts(conn)
            stored_before = sink_transactions(store) if store is not None else (0, 0)
            wal_before = insert_lsn(conn)
            cpu_before = daemon.usage_now() if daemon else None
            backends_before = backend_cpu_s(backends)
            cluster_before = cluster_cpu_s(postmaster)
            result = run_pgbench(
                ctx.server.bindir,
                dsn,
                PLATFORM_MIX,
                ctx.pgbench_variables(),
                PgbenchOptions(
                    clients=ctx.sizes.clients,
                    duration_s=seconds,
                    rate_tps=ctx.sizes.write_rate or None,
                ),
            )
            wal_after = insert_lsn(conn)
            cpu_after = daemon.usage_now() if daemon else None
            run = _describe(result)
            run["wal_bytes_per_txn"] = round(
                lsn_bytes(conn, wal_after, wal_before) / max(result.transactions, 1)
            )
            if daemon is not None:
                # How far behind the daemon was when the workload stopped, and how long it
                # needed to catch up: it must keep up, not just not slow the writers down.
                run["daemon_lag_bytes_at_end"] = lsn_bytes(
                    conn, wal_after, confirmed_flush(conn, _slot(mode))
                )
                assert store is not None
                run["daemon_catch_up_s"] = round(wait_recorded(store, commit_marker(conn)), 3)
                records, transactions = sink_transactions(store)
                run["records_per_sink_transaction"] = round(
                    (records - stored_before[0]) / max(transactions - stored_before[1], 1), 1
                )
                if cpu_before and cpu_after:
                    run["daemon_cpu_share"] = round(
                        (cpu_after.cpu_s - cpu_before.cpu_s) / max(result.duration_s, 1e-9), 3
                    )
            if recvlogical is not None:
                # every change of the run decoded and sent (it acknowledges every 10 s only)
                wait_sent(conn, RECV_SLOT, wal_after)
                floor_walsender_s = _spent(backends_before, backend_cpu_s(backends))["walsender"]
            # The window closes once pgbench's backends are reaped (their CPU is then in the
            # postmaster's cutime) and, with CDC, once the daemon has recorded all of it.
            wait_clients_gone(conn, postmaster, known)
            cluster_s = cluster_cpu_s(postmaster) - cluster_before
            run["row_changes"] = platform_change_counts(conn) - changes_before
            run.update(_cpu_per_change(run["row_changes"], cluster_s))
            if recvlogical is not None:
                run["walsender_cpu_us_per_change"] = _per_change_us(
                    floor_walsender_s, run["row_changes"]
                )
            if daemon is not None:
                run.update(
                    _daemon_cpu_per_change(
                        run["row_changes"],
                        _spent(backends_before, backend_cpu_s(backends)),
                        _spent_process(cpu_before, daemon.usage_now()),
                    )
                )
                exit_ = daemon.stop()
                daemon = None
                run["daemon_peak_rss_mb"] = round(exit_.peak_rss_bytes / 2**20, 1)
                if exit_.returncode != 0:
                    raise RuntimeError(f"cdc run exited {exit_.returncode}: {exit_.stderr_tail}")
        finally:
            if daemon is not None:
                daemon.kill()
            if recvlogical is not None:
                recvlogical.terminate()
                recvlogical.wait(timeout=30)
    return run


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each server process spent in the window (nan if it did not live through it:
    an exited backend's counters are gone)."""
    return {role: after[role] - before[role] if role in after else math.nan for role in before}


def _spent_process(before: ProcessUsage | None, after: ProcessUsage | None) -> float:
    return after.cpu_s - before.cpu_s if before and after else math.nan


def _per_change_us(cpu_s: float, changes: int) -> float:
    return round(cpu_s / max(changes, 1) * 1e6, 2)


def _cpu_per_change(changes: int, cluster_s: float) -> dict[str, Any]:
    return {
        "cluster_cpu_s": round(cluster_s, 3),
        "cluster_cpu_us_per_change": _per_change_us(cluster_s, changes),
    }


def _daemon_cpu_per_change(
    changes: int, backends_s: dict[str, float], daemon_s: float
) -> dict[str, Any]:
    walsender_s = backends_s.get("walsender", math.nan)
    sink_s = backends_s.get("sink_backend", math.nan)
    return {
        "walsender_cpu_s": round(walsender_s, 3),
        "sink_backend_cpu_s": round(sink_s, 3),
        "walsender_cpu_us_per_change": _per_change_us(walsender_s, changes),
        "sink_backend_cpu_us_per_change": _per_change_us(sink_s, changes),
        "daemon_cpu_s": round(daemon_s, 3),
        "daemon_cpu_us_per_change": _per_change_us(daemon_s, changes),
    }


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
            "mean_ms": round(median([r["latency_ms"]["mean"] for r in mode_runs]), 3),
            "p50_ms": round(median([r["latency_ms"]["p50"] for r in mode_runs]), 3),
            "p95_ms": round(median([r["latency_ms"]["p95"] for r in mode_runs]), 3),
            "p99_ms": round(median([r["latency_ms"]["p99"] for r in mode_runs]), 3),
            "changes_per_txn": round(
                median([r["row_changes"] / max(r["transactions"], 1) for r in mode_runs]), 2
            ),
            "wal_bytes_per_txn": round(median([r["wal_bytes_per_txn"] for r in mode_runs])),
        }
    # Ratios within a round (the modes of one round ran minutes apart), then their median.
    ratios: dict[str, float] = {}
    for mode in ("triggers", *CDC_MODES, "recvlogical"):
        per_round = [
            ratio(mine["tps"], base["tps"])
            for mine, base in zip(runs[mode], runs["none"], strict=True)
        ]
        ratios[mode] = round(median(per_round), 4)
        summary[mode]["tps_ratio_per_round"] = [round(value, 4) for value in per_round]
    for mode in CDC_MODES:
        cdc_runs = runs[mode]
        summary[mode]["daemon_catch_up_s"] = median([r["daemon_catch_up_s"] for r in cdc_runs])
        summary[mode]["daemon_lag_bytes_at_end"] = median(
            [r["daemon_lag_bytes_at_end"] for r in cdc_runs]
        )
        summary[mode]["daemon_cpu_share"] = median(
            [r.get("daemon_cpu_share", 0.0) for r in cdc_runs]
        )
        for key in (
            "walsender_cpu_us_per_change",
            "sink_backend_cpu_us_per_change",
            "daemon_cpu_us_per_change",
            "records_per_sink_transaction",
        ):
            summary[mode][key] = _median_of(cdc_runs, key)
    # the floor: what decoding alone costs the walsender with a consumer that does nothing
    summary["recvlogical"]["walsender_cpu_us_per_change"] = _median_of(
        runs["recvlogical"], "walsender_cpu_us_per_change"
    )
    for mode in MODES:
        summary[mode]["cluster_cpu_us_per_change"] = _median_of(
            runs[mode], "cluster_cpu_us_per_change"
        )
    database_cpu = _database_cpu(runs, "cdc")
    database_cpu_apart = _database_cpu(runs, "cdc_apart")
    targets = [
        target(
            "database CPU per audited change: CDC (walsender + sink) / triggers' added",
            database_cpu["ratio_cdc_to_triggers_added"],
            "<=",
            DATABASE_CPU_TARGET,
            "ratio",
        ),
        target(
            "the same, the store in another database of the cluster",
            database_cpu_apart["ratio_cdc_to_triggers_added"],
            "<=",
            DATABASE_CPU_TARGET,
            "ratio",
        ),
    ]
    if not ctx.sizes.write_rate:  # at a fixed offered rate every mode runs at that rate
        targets.insert(
            0, target("write path: CDC TPS / no auditing", ratios["cdc"], ">=", TPS_TARGET, "ratio")
        )
    return {
        "status": "ok",
        "workload": {
            "scripts": [{"script": name, "weight": weight} for name, weight in PLATFORM_MIX],
            "clients": ctx.sizes.clients,
            "seconds_per_run": ctx.sizes.write_seconds,
            "rounds": ctx.sizes.write_rounds,
            "rate_tps": ctx.sizes.write_rate or None,  # None: as fast as possible
        },
        "modes": summary,
        "ratios_to_none": ratios,
        "runs": runs,
        "targets": targets,
        "database_cpu_per_change": database_cpu,
        "database_cpu_per_change_store_apart": database_cpu_apart,
        "compared": {
            "triggers_tps_ratio": ratios["triggers"],
            # co-located, a consumer that does nothing: the ceiling of any CDC's TPS ratio here
            "recvlogical_tps_ratio": ratios["recvlogical"],
        },
    }


def _median_of(mode_runs: list[dict[str, Any]], key: str) -> float:
    return round(median([r.get(key, math.nan) for r in mode_runs]), 2)


def _database_cpu(runs: dict[str, list[dict[str, Any]]], mode: str) -> dict[str, Any]:
    """What each kind of auditing costs the database per row change, in µs of server CPU,
    per round (the modes of a round ran minutes apart), then the median: the triggers' and
    CDC's (``mode``) additions to the cluster's CPU over no auditing, and CDC's own server
    processes."""
    rounds: list[dict[str, float]] = []
    for none, triggers, cdc, floor in zip(
        runs["none"], runs["triggers"], runs[mode], runs["recvlogical"], strict=True
    ):
        base = none["cluster_cpu_us_per_change"]
        triggers_added = triggers["cluster_cpu_us_per_change"] - base
        cdc_own = cdc.get("walsender_cpu_us_per_change", math.nan) + cdc.get(
            "sink_backend_cpu_us_per_change", math.nan
        )
        cdc_added = cdc["cluster_cpu_us_per_change"] - base
        positive = triggers_added if triggers_added > 0 else math.nan
        rounds.append(
            {
                "triggers_added_us": round(triggers_added, 2),
                "cdc_added_us": round(cdc_added, 2),
                "cdc_walsender_sink_us": round(cdc_own, 2),
                # Triggers adding nothing (or less than noise) leave no ratio, never a pass.
                "ratio_cdc_to_triggers_added": round(ratio(cdc_own, positive), 4),
                "ratio_cdc_added_to_triggers_added": round(ratio(cdc_added, positive), 4),
                # pg_recvlogical's walsender: decoding alone, whatever the consumer does
                "walsender_floor_us": round(floor["walsender_cpu_us_per_change"], 2),
                "ratio_walsender_floor_to_triggers_added": round(
                    ratio(floor["walsender_cpu_us_per_change"], positive), 4
                ),
            }
        )
    summary: dict[str, Any] = {key: round(median([r[key] for r in rounds]), 4) for key in rounds[0]}
    summary["per_round"] = rounds
    return summary
