"""Whether a consumer can make the walsender cheaper by reading less often. Beside a live
workload the walsender costs about twice what it costs draining a backlog (docs/benchmarks.md,
"Where the walsender's live cost comes from"): it wakes for every commit. A consumer that reads
the socket every 20 ms instead of as soon as bytes arrive would let the walsender's messages
pile up in the socket buffers, if that made the walsender batch its work.

One slot, the platform's mix at a fixed rate (pgbench, 4 clients) for the whole run, and a
minimal consumer of pgoutput (libpq through psycopg, no decoding) that streams for one window,
in alternating order: ``eager`` (select, then read everything) and ``paced`` (sleep 20 ms, then
read everything). The walsender's CPU from ``/proc`` over its life, per row change received.

    python -m bench.paced_reader_ab [--rounds 4] [--window 15] [--rate 800]
"""

from __future__ import annotations

import argparse
import json
import select
import statistics
import struct
import subprocess
import sys
import threading
import time

import psycopg
from psycopg import pq

from bench.cdc_process import PUBLICATION, small_platform_source
from bench.process_probe import cpu_seconds
from bench.server import BenchServer
from bench.workload import PLATFORM_MIX, PgbenchOptions, run_pgbench

SLOT = "paced_reader_ab"
PACE_S = 0.020
PG_EPOCH = 946_684_800  # 2000-01-01 in Unix seconds: the protocol's time origin


def consume(dsn: str, window_s: float, paced: bool) -> None:
    """Stream ``SLOT`` for ``window_s``: print the walsender's pid, then the row changes
    received and the reads made (one JSON line each)."""
    conn = psycopg.connect(dsn, autocommit=True, replication="database")
    pgconn = conn.pgconn
    pgconn.send_query(
        f"START_REPLICATION SLOT {SLOT} LOGICAL 0/0 "
        f"(proto_version '1', publication_names '{PUBLICATION}')".encode()
    )
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None or result.status != pq.ExecStatus.COPY_BOTH:
                raise RuntimeError(pgconn.error_message.decode())
            break
        select.select([pgconn.socket], [], [], 1)
    pgconn.nonblocking = 1
    print(json.dumps({"pid": pgconn.backend_pid}), flush=True)
    received = changes = reads = 0
    last_status = time.monotonic()

    def status() -> None:
        now_us = int((time.time() - PG_EPOCH) * 1e6)
        pgconn.put_copy_data(b"r" + struct.pack("!QQQqB", received, received, received, now_us, 0))
        pgconn.flush()

    end = time.monotonic() + window_s
    while time.monotonic() < end:
        if paced:
            time.sleep(PACE_S)
        else:
            select.select([pgconn.socket], [], [], 0.5)
        pgconn.consume_input()
        reads += 1
        while True:
            size, data = pgconn.get_copy_data(1)
            if size <= 0:
                break
            if data[0] == ord("w"):  # XLogData: its payload's first byte is the message type
                received = max(received, struct.unpack_from("!Q", data, 1)[0])
                changes += data[25] in b"IUD"
            elif data[0] == ord("k") and data[17]:  # a keepalive that asks for a reply
                status()
        if time.monotonic() - last_status > 10:
            status()
            last_status = time.monotonic()
    status()
    print(json.dumps({"changes": changes, "reads": reads}), flush=True)
    conn.close()


def _window(dsn: str, window_s: float, paced: bool) -> tuple[float, int, int]:
    """(walsender CPU seconds, row changes, reads) of one consumer's window."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.paced_reader_ab", "--consume", dsn, str(window_s)]
        + (["--paced"] if paced else []),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    pid = json.loads(proc.stdout.readline())["pid"]
    spent = 0.0
    while (now := cpu_seconds(pid)) is not None:  # the walsender exits after the consumer
        spent = now
        time.sleep(0.01)
    tail = json.loads(proc.stdout.readline())
    if proc.wait() != 0:
        raise RuntimeError("the consumer failed")
    return spent, int(tail["changes"]), int(tail["reads"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=800.0)
    parser.add_argument("--consume", nargs=2, metavar=("DSN", "SECONDS"))
    parser.add_argument("--paced", action="store_true")
    args = parser.parse_args()
    if args.consume:
        consume(args.consume[0], float(args.consume[1]), args.paced)
        return
    server = BenchServer().start()
    try:
        dsn, counts = small_platform_source(server, "paced_reader_ab")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (SLOT,))
        load = threading.Thread(
            target=run_pgbench,
            args=(server.bindir, dsn, PLATFORM_MIX, counts.as_params()),
            kwargs={
                "options": PgbenchOptions(
                    clients=4, duration_s=args.window * 2 * args.rounds + 20, rate_tps=args.rate
                )
            },
            daemon=True,
        )
        load.start()
        time.sleep(2)
        per_change: dict[bool, list[float]] = {False: [], True: []}
        for round_no in range(args.rounds):
            for paced in (False, True) if round_no % 2 == 0 else (True, False):
                spent, changes, reads = _window(dsn, args.window, paced)
                per_change[paced].append(spent * 1e6 / max(changes, 1))
                print(
                    f"round {round_no + 1} {'paced' if paced else 'eager'}: {changes} changes, "
                    f"{reads} reads; walsender {per_change[paced][-1]:.1f} µs/change",
                    flush=True,
                )
        ratios = [p / e for e, p in zip(per_change[False], per_change[True], strict=True)]
        print(
            f"walsender µs/change: eager {statistics.median(per_change[False]):.1f}, paced "
            f"{statistics.median(per_change[True]):.1f}; paced ÷ eager median "
            f"{statistics.median(ratios):.3f} (rounds {', '.join(f'{r:.2f}' for r in ratios)})"
        )
        load.join()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
