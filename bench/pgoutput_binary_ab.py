"""Whether pgoutput's ``binary`` option (values in their types' binary send format rather than
their text output) makes the walsender cheaper: two slots taken at one LSN, one backlog of the
platform's mix (pgbench, 4 clients) behind them, each drained by ``pg_recvlogical`` into
/dev/null, one with ``binary=true``, in alternating order; the walsender's CPU from
``/proc/<pid>/schedstat``, sampled until it exits. Prints each round and the median ratio.

    python -m bench.pgoutput_binary_ab [--rounds 6] [--seconds 8]
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import psycopg

from bench.cdc_process import PUBLICATION, small_platform_source
from bench.process_probe import cpu_seconds
from bench.recvlogical import _command
from bench.server import BenchServer
from bench.stats import ratios_line
from bench.store_copy import ab_arguments
from bench.workload import PLATFORM_MIX, PgbenchOptions, run_pgbench

CHANGES = (
    "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del)::bigint FROM pg_stat_user_tables "
    "WHERE schemaname = 'public'"
)


def _drain(
    server: BenchServer, dsn: str, conn: psycopg.Connection[Any], slot: str, end: str, binary: bool
) -> float:
    """The walsender's CPU seconds for draining ``slot`` to ``end``."""
    extra = [f"--endpos={end}", *(["--option=binary=true"] if binary else [])]
    proc = subprocess.Popen(
        _command(server.bindir, dsn, slot, PUBLICATION, *extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    pid = None
    while pid is None:
        row = conn.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        pid = row[0] if row else None
        if pid is None and proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "exited")
    spent = 0.0
    while (now := cpu_seconds(pid)) is not None:  # the walsender exits at --endpos
        spent = now
        time.sleep(0.005)
    if proc.wait() != 0:
        raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "failed")
    return spent


def main() -> None:
    args = ab_arguments(__doc__).parse_args()
    server = BenchServer().start()
    try:
        dsn, counts = small_platform_source(server, "pgoutput_binary_ab")
        ratios = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            for round_no in range(args.rounds):
                for name in ("text", "binary"):
                    conn.execute(
                        "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (f"ab_{name}",)
                    )
                before = conn.execute(CHANGES).fetchone()[0]  # type: ignore[index]
                run_pgbench(
                    server.bindir,
                    dsn,
                    PLATFORM_MIX,
                    counts.as_params(),
                    PgbenchOptions(clients=4, duration_s=args.seconds),
                )
                end = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]  # type: ignore[index]
                time.sleep(0.7)  # the statistics collector's counts arrive late
                changes = int(conn.execute(CHANGES).fetchone()[0] - before)  # type: ignore[index]
                spent = {}
                for name in ("text", "binary") if round_no % 2 == 0 else ("binary", "text"):
                    spent[name] = _drain(server, dsn, conn, f"ab_{name}", end, name == "binary")
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (f"ab_{name}",))
                ratios.append(spent["binary"] / spent["text"])
                print(
                    f"round {round_no + 1}: {changes} changes; walsender text "
                    f"{spent['text'] * 1e6 / changes:.1f}, binary "
                    f"{spent['binary'] * 1e6 / changes:.1f} µs/change; binary/text "
                    f"{ratios[-1]:.3f}",
                    flush=True,
                )
        print(f"binary/text {ratios_line(ratios)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
