"""The lean row of issue 17 ("a row that stores what cannot be derived"), measured before it is
built: the same records through the same sink, an update's ``old`` stored (as today) or left
out (it is derivable from ``new`` and ``changes`` in the common case), interleaved, each into a
store of its own on a throwaway server. Prints the sink backend's CPU (``/proc``), the client's
and the WAL per record of each round, and the medians of lean ÷ full.

    python -m bench.lean_row_ab [--rows 40000] [--batch 46] [--rounds 6]

The records are bench.sink_ab's: half inserts, half updates of a 12-column row (whole old row
and its diff), four changes per source transaction.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

from bench import sink_ab


def _worker(dsn: str, rows: int, batch: int, shift: int, lean: bool) -> dict[str, Any]:
    made = sink_ab._records
    if lean:

        def without_old(count: int, first_lsn: int) -> list[Any]:
            return [
                record._replace(old=None) if record.operation == "update" else record
                for record in made(count, first_lsn)
            ]

        sink_ab._records = without_old
    return sink_ab.worker(dsn, rows, batch, shift)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=46)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--worker", nargs=3, metavar=("DSN", "SHIFT", "LEAN"))
    args = parser.parse_args()
    if args.worker:
        dsn, shift, lean = args.worker
        print(json.dumps(_worker(dsn, args.rows, args.batch, int(shift), lean == "lean")))
        return
    from bench.server import BenchServer

    server = BenchServer().start()
    try:
        dsns = {}
        for name in ("full", "lean"):
            dsns[name] = server.create_database(f"lean_row_{name}")
            sink_ab._setup_store(sink_ab._HERE, dsns[name])
        ratios: dict[str, list[float]] = {"server_us": [], "client_us": [], "wal_bytes": []}
        shift = 1 << 40
        for round_no in range(args.rounds):
            got = {}
            for name in ("full", "lean") if round_no % 2 == 0 else ("lean", "full"):
                shift += 1 << 32
                command = [sys.executable, "-m", "bench.lean_row_ab", "--rows", str(args.rows)]
                command += ["--batch", str(args.batch), "--worker", dsns[name], str(shift), name]
                out = subprocess.run(
                    command, check=True, capture_output=True, text=True, cwd=sink_ab._HERE
                ).stdout
                got[name] = json.loads(out.strip().splitlines()[-1])
            print(
                f"round {round_no + 1}: "
                + "  ".join(
                    f"{name} server {got[name]['server_us']:.1f} client "
                    f"{got[name]['client_us']:.1f} µs/record, WAL {got[name]['wal_bytes']:.0f} B"
                    for name in ("full", "lean")
                ),
                flush=True,
            )
            for key, values in ratios.items():
                values.append(got["lean"][key] / got["full"][key])
        print(
            "lean/full medians: "
            + ", ".join(f"{key} {statistics.median(v):.3f}" for key, v in ratios.items())
            + "; per round server "
            + ", ".join(f"{v:.2f}" for v in ratios["server_us"])
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
