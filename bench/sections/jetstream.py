"""7. JetStream: the drain into a NATS JetStream stream beside the PostgreSQL sink, and ingest.

Each round builds one backlog (a fresh copy of the seeded platform, ``cdc setup``, the platform
workload until the slot holds the asked-for row changes); before it is written, the slot is
copied once per consumer, so every consumer drains the identical changes:

* ``cdc_postgres``: ``cdc run --drain`` into the activity store (COPY + checkpoint, the chain);
* ``cdc_jetstream_r1`` / ``cdc_jetstream_r3``: ``cdc run --drain`` with ``[sink] kind =
  "jetstream"`` into a stream of 1 and of 3 replicas (a PubAck means stored on a majority),
  on a 3-node cluster of its own on this machine (cdc.embedded_nats);
* ``pg_recvlogical``: pgoutput to /dev/null, the speed limit of any consumer.

Then ``cdc ingest --drain`` writes the 3-replica stream into a fresh store (records/s). Every
consumer is a fresh process timed from spawn to exit. Target: the JetStream sink (3 replicas)
at >= 0.8x the PostgreSQL sink's drain rate.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from bench.backlog import build_backlog
from bench.cdc_process import (
    CONFIG_PATH,
    PUBLICATION,
    SLOT,
    DaemonProcess,
    cdc_command,
    cdc_env,
    cdc_setup,
)
from bench.context import BenchContext, log, rotated, target
from bench.platform_db import create_platform_db
from bench.recvlogical import run_pg_recvlogical
from bench.slots import copy_slot
from bench.stats import median, ratio
from cdc.demo.embedded_nats import NatsCluster

CONSUMERS: tuple[str, ...] = (
    "cdc_postgres",
    "cdc_jetstream_r1",
    "cdc_jetstream_r3",
    "pg_recvlogical",
)
SLOTS = {
    "cdc_jetstream_r1": "bench_js_r1",
    "cdc_jetstream_r3": "bench_js_r3",
    "pg_recvlogical": "bench_recvlogical",
}
REPLICAS = {"cdc_jetstream_r1": 1, "cdc_jetstream_r3": 3}
JETSTREAM_TARGET = 0.8  # of the PostgreSQL sink's drain rate
DBNAME = "jetstream"
STORE_DB = "jetstream_store"


def _config(ctx: BenchContext, cluster: NatsCluster, consumer: str, round_index: int) -> Path:
    """examples/platform.toml with its own slot and a JetStream sink of its own stream."""
    replicas = REPLICAS[consumer]
    name = f"BENCH_R{replicas}_{round_index}"
    servers = ", ".join(f'"{url}"' for url in cluster.urls)
    text = CONFIG_PATH.read_text()
    text = text.replace(f'slot = "{SLOT}"', f'slot = "{SLOTS[consumer]}"', 1)
    text = text.replace(
        "[sink]\n",
        f'[sink]\nkind = "jetstream"\nservers = [{servers}]\nstream = "{name}"\n'
        f'subject_prefix = "{name.lower()}"\nreplicas = {replicas}\n'
        f'bucket = "{name.lower()}"\n',
        1,
    )
    path = ctx.logdir / f"jetstream-{consumer}-r{round_index}.toml"
    path.write_text(text)
    return path


def run(ctx: BenchContext) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    with NatsCluster(3, name="cdc-bench") as cluster:
        for round_index in range(ctx.sizes.rounds):
            rounds.append(_round(ctx, cluster, round_index))
    rates = {
        name: median([r["consumers"][name]["changes_per_s"] for r in rounds]) for name in CONSUMERS
    }
    to_postgres = {
        name: round(median([r["ratios_to_postgres_sink"][name] for r in rounds]), 4)
        for name in CONSUMERS
    }
    ingest_rate = median([r["ingest"]["records_per_s"] for r in rounds])
    return {
        "status": "ok",
        "backlog": {
            "min_changes": ctx.sizes.drain_changes,
            "row_changes": median([r["row_changes"] for r in rounds]),
        },
        "changes_per_s": {name: round(value) for name, value in rates.items()},
        "ratios_to_postgres_sink": to_postgres,
        "ingest_records_per_s": round(ingest_rate),
        "rounds": rounds,
        "targets": [
            target(
                "drain: JetStream sink (3 replicas) / PostgreSQL sink",
                to_postgres["cdc_jetstream_r3"],
                ">=",
                JETSTREAM_TARGET,
                "ratio",
            ),
        ],
    }


def _round(ctx: BenchContext, cluster: NatsCluster, round_index: int) -> dict[str, Any]:
    dsn = create_platform_db(ctx.server, DBNAME)
    cdc_setup(dsn)
    consumers: dict[str, dict[str, Any]] = {}
    configs = {consumer: _config(ctx, cluster, consumer, round_index) for consumer in REPLICAS}
    try:
        with ctx.server.connect(DBNAME) as conn:
            for copy in SLOTS.values():
                copy_slot(conn, SLOT, copy)
            for config in configs.values():
                _run_cdc(config, dsn, "setup")  # the stream and the bucket
            backlog = build_backlog(
                ctx, conn, DBNAME, dsn, SLOT, min_changes=ctx.sizes.drain_changes
            )
            for name in rotated(CONSUMERS, round_index):
                consumers[name] = _drain_with(ctx, name, dsn, backlog.end_lsn, configs, round_index)
                log.info(
                    "jetstream round %d %-18s %.2f s", round_index, name, consumers[name]["wall_s"]
                )
        ingest = _ingest(ctx, configs["cdc_jetstream_r3"], dsn)
    finally:
        ctx.server.drop_database(DBNAME)
        ctx.server.drop_database(STORE_DB)
    changes = consumers["cdc_postgres"]["changes"]
    for consumer in consumers.values():
        consumer["changes_per_s"] = round(changes / consumer["wall_s"])
    base = consumers["cdc_postgres"]["changes_per_s"]
    return {
        "round": round_index,
        "row_changes": changes,
        "consumers": consumers,
        "ratios_to_postgres_sink": {
            name: round(ratio(consumers[name]["changes_per_s"], base), 4) for name in CONSUMERS
        },
        "ingest": ingest,
    }


def _run_cdc(config: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        cdc_command(*args, config=config),
        env=cdc_env(dsn),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cdc {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def _drain_with(
    ctx: BenchContext,
    consumer: str,
    dsn: str,
    end_lsn: str,
    configs: dict[str, Path],
    round_index: int,
) -> dict[str, Any]:
    if consumer == "pg_recvlogical":
        recv = run_pg_recvlogical(
            ctx.server.bindir, dsn, slot=SLOTS[consumer], publication=PUBLICATION, end_lsn=end_lsn
        )
        return {"wall_s": round(recv.wall_s, 3)}
    config = configs.get(consumer, CONFIG_PATH)
    daemon = DaemonProcess(
        dsn, ctx.logdir / f"jetstream-{consumer}-r{round_index}.log", drain=True, config=config
    )
    exit_ = daemon.start().wait(timeout_s=3600)
    if exit_.returncode != 0 or exit_.summary is None:
        raise RuntimeError(f"{consumer} exited {exit_.returncode}: {exit_.stderr_tail}")
    return {
        "wall_s": round(exit_.wall_s, 3),
        "changes": exit_.summary.changes,
        "records": exit_.summary.records,
        "cpu_s": round(exit_.cpu_s, 2),
        "peak_rss_mb": round(exit_.peak_rss_bytes / 2**20, 1),
    }


def _ingest(ctx: BenchContext, config: Path, dsn: str) -> dict[str, Any]:
    store = ctx.server.create_database(STORE_DB)
    started = time.monotonic()
    done = _run_cdc(config, dsn, "ingest", "--to", store, "--drain")
    wall_s = time.monotonic() - started
    with ctx.server.connect(STORE_DB) as conn:
        row = conn.execute("SELECT count(*) FROM activity.records").fetchone()
    records = int(row[0]) if row else 0
    log.info("jetstream ingest: %d records in %.2f s", records, wall_s)
    return {
        "wall_s": round(wall_s, 3),
        "records": records,
        "records_per_s": round(records / wall_s) if wall_s else 0,
        "summary": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "",
    }
