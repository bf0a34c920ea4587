"""A/B of the sink between two source trees, interleaved in one run: what the server (the sink's
backend, from /proc) and the daemon's sink thread spend per record.

    python -m bench.sink_ab --ref /path/to/other/tree --dsn "host=... dbname=..." [--rows N]
    python -m bench.sink_ab --ref /path/to/other/tree --own-stores [--rows N]

With ``--own-stores`` each tree writes into a store of its own, made by its own migrations, on a
throwaway server (bench.server): the A/B of a change to the store itself (column types,
indexes). Without it both write into the store at ``--dsn``.

Each round runs one worker process per tree (order alternating), each importing ``cdc`` from its
own tree and writing the same made-up records through its ``cdc.sink.Sink`` (COPY, chain,
rollups, checkpoint, durable commit) in committed batches, into the same store (``cdc setup``
made it); every write gets LSNs of its own so the rounds never collide and both trees write into
an equally full table. The records are shaped like the platform's: an insert with a 12-column
row, an update with the whole old row and its diff, in jsonb's text form. Prints per-record
figures of each round and the medians of the B/A ratios. ``--batch 20`` (or 100) gives the
small flushes of live traffic, where per-flush costs (the commit's WAL flush, the round trips,
the statements around the COPY) weigh most.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.process_probe import cpu_seconds

_HERE = Path(__file__).resolve().parent.parent


def _cpu_s(pid: int) -> float:
    spent = cpu_seconds(pid)
    if spent is None:
        raise RuntimeError(f"the server process {pid} is gone")
    return spent


def _document(number: int, balance: str) -> str:
    # keys already in jsonb's order (length, then bytes)
    members = [
        ("id", str(number)),
        ("kyc", '"approved"'),
        ("email", f'"user{number}@example.com"'),
        ("status", '"active"'),
        ("balance", balance),
        ("country", '"LU"'),
        ("currency", '"EUR"'),
        ("created_at", '"2026-12-04T15:00:00.123456+00:00"'),
        ("created_by", "17"),
        ("updated_at", '"2026-12-04T15:00:01.654321+00:00"'),
        ("updated_by", "17"),
        ("display_name", f'"Investor number {number}"'),
    ]
    members.sort(key=lambda kv: (len(kv[0]), kv[0]))
    return "{" + ", ".join(f'"{k}": {v}' for k, v in members) + "}"


def _records(count: int, first_lsn: int) -> list[Any]:
    try:  # the layout since the house move, or before it (REF may be older)
        from cdc.pipeline.activity import ActivityRecord
    except ImportError:
        from cdc.activity import ActivityRecord  # type: ignore[no-redef]

    records = []
    for i in range(count):
        lsn = first_lsn + (i // 4) * 64  # four changes per source transaction
        commit_lsn = f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
        update = i % 2 == 1
        new = _document(i, f"{1000 + i}.50")
        old = _document(i, f"{999 + i}.50") if update else None
        changes = (
            '{"balance": {"new": ' + f"{1000 + i}.50" + ', "old": ' + f"{999 + i}.50" + "}}"
            if update
            else None
        )
        operation = "update" if update else "insert"
        records.append(
            ActivityRecord(
                "2026-12-04T15:00:00.123456+00:00",
                "database",
                operation,
                f"investor.{operation}",
                "investor",
                "info",
                "public",
                "investors",
                "investor",
                str(i),
                "17",
                None,
                old,
                new,
                changes,
                f"investor {i} {operation}d by 17" + (": balance" if update else ""),
                1000 + i // 4,
                commit_lsn,
                i % 4,
            )
        )
    return records


def worker(dsn: str, rows: int, batch: int, shift: int) -> dict[str, Any]:
    try:  # the layout since the house move, or before it (REF may be older)
        from cdc.pipeline.batching import Checkpoint, Flush
        from cdc.pipeline.sink import Sink
    except ImportError:
        from cdc.batching import Checkpoint, Flush  # type: ignore[no-redef]
        from cdc.sink import Sink  # type: ignore[no-redef]

    from cdc.lsn import Lsn

    records = _records(rows, shift)
    sink = Sink(dsn, schema="activity", table="records", slot=f"ab_{shift}")
    sink.open()
    backend = sink._conn.info.backend_pid  # type: ignore[union-attr]
    try:
        wal0 = sink._conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[union-attr,index]
        sink._conn.commit()  # type: ignore[union-attr]
        cpu0, client0, wall0 = _cpu_s(backend), time.process_time(), time.perf_counter()
        for first in range(0, rows, batch):
            part = records[first : first + batch]
            lsn = Lsn.parse(part[-1].commit_lsn)
            sink.write(Flush(part, Checkpoint(lsn, lsn + 1, None)))
        wall = time.perf_counter() - wall0
        server = _cpu_s(backend) - cpu0
        client = time.process_time() - client0
        wal = sink._conn.execute(  # type: ignore[union-attr,index]
            "SELECT pg_current_wal_lsn() - %s::pg_lsn", (wal0,)
        ).fetchone()[0]
        sink._conn.commit()  # type: ignore[union-attr]
    finally:
        sink.close()
    import cdc

    return {
        "cdc": cdc.__file__ or "",
        "server_us": server / rows * 1e6,
        "client_us": client / rows * 1e6,
        "wall_us": wall / rows * 1e6,
        "wal_bytes": float(wal) / rows,
    }


def _run(tree: Path, dsn: str, rows: int, batch: int, shift: int) -> dict[str, Any]:
    # the script by its path, from a neutral directory: `cdc` comes from the tree's PYTHONPATH
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--dsn", dsn]
    command += ["--rows", str(rows), "--batch", str(batch), "--shift", str(shift)]
    out = subprocess.run(
        command, env=env, cwd="/", check=True, capture_output=True, text=True
    ).stdout
    got = dict(json.loads(out.strip().splitlines()[-1]))
    if not str(got["cdc"]).startswith(str(tree)):
        raise SystemExit(f"the worker imported {got['cdc']}, not the tree {tree}")
    return got


def _setup_store(tree: Path, dsn: str) -> None:
    """The activity store at ``dsn``, made by the migrations of ``tree``."""
    script = (
        "import sys\n"
        "from cdc.config import settings_from_mapping\n"
        "from cdc.control.setup import setup_store\n"
        "config = {'tables': [{'name': 'public.investors'}]}\n"
        "setup_store(settings_from_mapping(config, env={}, require_source=False), sys.argv[1])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-c", script, dsn], env=env, cwd="/", check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ref", type=Path, help="tree A (B is this tree)")
    parser.add_argument("--dsn")
    parser.add_argument("--own-stores", action="store_true", help="a store per tree (see above)")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--shift", type=int, default=0)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.dsn, args.rows, args.batch, args.shift)))
        return
    trees = {"A": args.ref.resolve(), "B": _HERE}
    if not args.own_stores:
        if not args.dsn:
            parser.error("--dsn or --own-stores")
        _compare(args, trees, {"A": args.dsn, "B": args.dsn})
        return
    from bench.server import BenchServer

    server = BenchServer().start()
    try:
        dsns = {}
        for name, tree in trees.items():
            dsns[name] = server.create_database(f"sink_ab_{name.lower()}")
            _setup_store(tree, dsns[name])
        _compare(args, trees, dsns)
    finally:
        server.stop()


def _compare(args: argparse.Namespace, trees: dict[str, Path], dsns: dict[str, str]) -> None:
    ratios: dict[str, list[float]] = {
        "server_us": [],
        "client_us": [],
        "wall_us": [],
        "wal_bytes": [],
    }
    shift = 1 << 40
    for round_no in range(args.rounds):
        order = ("A", "B") if round_no % 2 == 0 else ("B", "A")
        got = {}
        for name in order:
            shift += 1 << 32
            got[name] = _run(trees[name], dsns[name], args.rows, args.batch, shift)
        print(
            f"round {round_no + 1}: "
            + "  ".join(
                f"{name} server {got[name]['server_us']:.1f} client {got[name]['client_us']:.1f} "
                f"wall {got[name]['wall_us']:.1f} µs/record, WAL {got[name]['wal_bytes']:.0f} B"
                for name in ("A", "B")
            ),
            flush=True,
        )
        for key in ratios:
            ratios[key].append(got["B"][key] / got["A"][key])
    print(
        "B/A medians: "
        + ", ".join(f"{key} {statistics.median(v):.2f}" for key, v in ratios.items())
    )


if __name__ == "__main__":
    main()
