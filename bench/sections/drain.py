"""2. Drain throughput: how fast a backlog empties, against the consumers one would compare.

Each round builds a fresh backlog (a new copy of the seeded platform, ``cdc setup``, the
platform workload until the slot holds the asked-for row changes); before the backlog is
written, the slot is copied once per consumer, so all of them drain the identical changes:

* ``cdc``: ``cdc run --drain``, which also writes every record durably (COPY + checkpoint,
  ``synchronous_commit = on``) into the store in the same database;
* ``pg_recvlogical``: pgoutput to /dev/null, the speed limit of any consumer of the stream;
* ``python_peer``: psycopg2 + pypgoutput, receiving and decoding only (bench/python_peer.py).

Every consumer is a fresh process timed from spawn to exit. A fresh database per round keeps
the daemon from reading the WAL of an earlier round's records. The decoders are then compared
in-process on payloads captured from the first round's backlog (bench/decoder_speed.py).
"""

from __future__ import annotations

from typing import Any

from bench.backlog import build_backlog
from bench.cdc_process import PUBLICATION, SLOT, DaemonProcess, cdc_setup
from bench.context import BenchContext, log, rotated, target
from bench.decoder_speed import capture_payloads, compare_decoders
from bench.platform_db import create_platform_db
from bench.python_peer import run_python_peer
from bench.recvlogical import run_pg_recvlogical
from bench.slots import copy_slot
from bench.stats import median, ratio

CONSUMERS: tuple[str, ...] = ("cdc", "pg_recvlogical", "python_peer")
DAEMON_TARGET = 0.6  # of pg_recvlogical's rate, while writing durable records
DECODER_TARGET = 3.0  # cdc.pipeline.pgoutput.Decoder vs pypgoutput, same payloads
DBNAME = "drain"


def run(ctx: BenchContext) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    decoders: dict[str, Any] | None = None
    for round_index in range(ctx.sizes.rounds):
        result, payloads = _round(ctx, round_index, capture=round_index == 0)
        rounds.append(result)
        if payloads:
            decoders = compare_decoders(payloads)
            log.info(
                "decoders: cdc %s changes/s, pypgoutput %s changes/s",
                decoders["changes_per_s"]["cdc"],
                decoders["changes_per_s"]["pypgoutput"],
            )
    assert decoders is not None
    rates = {
        name: median([r["consumers"][name]["changes_per_s"] for r in rounds]) for name in CONSUMERS
    }
    ratios = {
        name: round(median([r["ratios_to_pg_recvlogical"][name] for r in rounds]), 4)
        for name in CONSUMERS
    }
    return {
        "status": "ok",
        "backlog": {
            "min_changes": ctx.sizes.drain_changes,
            "row_changes": median([r["row_changes"] for r in rounds]),
            "wal_mb": round(median([r["backlog"]["wal_bytes"] for r in rounds]) / 2**20, 1),
            "transactions": median([r["backlog"]["transactions"] for r in rounds]),
        },
        "changes_per_s": {name: round(value) for name, value in rates.items()},
        "ratios_to_pg_recvlogical": ratios,
        "daemon_peak_rss_mb": max(r["consumers"]["cdc"]["peak_rss_mb"] for r in rounds),
        "decoders": decoders,
        "rounds": rounds,
        "targets": [
            target(
                "drain: cdc run --drain / pg_recvlogical",
                ratios["cdc"],
                ">=",
                DAEMON_TARGET,
                "ratio",
            ),
            target(
                "decoder: cdc.pipeline.pgoutput / pypgoutput",
                decoders["ratio_cdc_to_pypgoutput"],
                ">=",
                DECODER_TARGET,
                "ratio",
            ),
        ],
    }


def _round(
    ctx: BenchContext, round_index: int, *, capture: bool
) -> tuple[dict[str, Any], list[bytes]]:
    dsn = create_platform_db(ctx.server, DBNAME)
    cdc_setup(dsn)
    payloads: list[bytes] = []
    try:
        with ctx.server.connect(DBNAME) as conn:
            copies = {"pg_recvlogical": "bench_recvlogical", "python_peer": "bench_peer"}
            if capture:
                copies["capture"] = "bench_capture"
            for copy in copies.values():
                copy_slot(conn, SLOT, copy)
            backlog = build_backlog(
                ctx, conn, DBNAME, dsn, SLOT, min_changes=ctx.sizes.drain_changes
            )
            consumers: dict[str, dict[str, Any]] = {}
            for name in rotated(CONSUMERS, round_index):
                consumers[name] = _drain_with(ctx, name, dsn, backlog.end_lsn, copies, round_index)
                log.info(
                    "drain round %d %-14s %.2f s", round_index, name, consumers[name]["wall_s"]
                )
            if capture:
                payloads = capture_payloads(
                    conn,
                    slot=copies["capture"],
                    publication=PUBLICATION,
                    end_lsn=backlog.end_lsn,
                    limit=ctx.sizes.decoder_payloads,
                )
    finally:
        ctx.server.drop_database(DBNAME)
    # The peer counts every Insert/Update/Delete/Truncate message: the exact size of the
    # backlog in row changes, which the daemon's own count must match.
    changes = consumers["python_peer"]["changes"]
    if consumers["cdc"]["changes"] != changes:
        log.warning(
            "the daemon counted %s changes, the peer %s", consumers["cdc"]["changes"], changes
        )
    for consumer in consumers.values():
        consumer["changes_per_s"] = round(changes / consumer["wall_s"])
    base = consumers["pg_recvlogical"]["changes_per_s"]
    result = {
        "round": round_index,
        "row_changes": changes,
        "backlog": {
            "wal_bytes": backlog.wal_bytes,
            "transactions": backlog.transactions,
            "seconds_to_build": backlog.seconds_to_build,
        },
        "consumers": consumers,
        "ratios_to_pg_recvlogical": {
            name: round(ratio(consumers[name]["changes_per_s"], base), 4) for name in CONSUMERS
        },
    }
    return result, payloads


def _drain_with(
    ctx: BenchContext,
    consumer: str,
    dsn: str,
    end_lsn: str,
    copies: dict[str, str],
    round_index: int,
) -> dict[str, Any]:
    if consumer == "cdc":
        daemon = DaemonProcess(dsn, ctx.logdir / f"drain-r{round_index}.log", drain=True)
        exit_ = daemon.start().wait(timeout_s=3600)
        if exit_.returncode != 0 or exit_.summary is None:
            raise RuntimeError(f"cdc run --drain exited {exit_.returncode}: {exit_.stderr_tail}")
        return {
            "wall_s": round(exit_.wall_s, 3),
            "daemon_elapsed_s": exit_.summary.elapsed_s,
            "changes": exit_.summary.changes,
            "records": exit_.summary.records,
            "transactions": exit_.summary.transactions,
            "cpu_s": round(exit_.cpu_s, 2),
            "peak_rss_mb": round(exit_.peak_rss_bytes / 2**20, 1),
        }
    if consumer == "pg_recvlogical":
        recv = run_pg_recvlogical(
            ctx.server.bindir,
            dsn,
            slot=copies["pg_recvlogical"],
            publication=PUBLICATION,
            end_lsn=end_lsn,
        )
        return {"wall_s": round(recv.wall_s, 3)}
    peer = run_python_peer(
        dsn, slot=copies["python_peer"], publication=PUBLICATION, end_lsn=end_lsn
    )
    return {
        "wall_s": round(peer.wall_s, 3),
        "changes": peer.changes,
        "messages": peer.messages,
        "payload_mb": round(peer.payload_bytes / 2**20, 1),
        "kinds": peer.kinds,
    }
