"""Instructions per change of the pipeline's pure core, counted by valgrind: a figure that does
not move with the load of a shared machine.

    python -m bench.hot_path --capture FILE               # once: a platform backlog, saved
    python -m bench.feed_instructions FILE [--payloads N]  # instructions per change, this tree

``Pipeline.feed`` (decode, assemble, map, batch: everything the daemon's read loop does with a
payload but the socket and the sink) runs over the first N payloads of the capture, in a
process started under ``valgrind --tool=callgrind``, once with the feeding and once without;
the difference divided by the changes fed is the figure. The collector is tuned as ``cdc run``
tunes it (cdc.service.run.quiet_collector). Callgrind counts the same instructions for the
same code and input whatever else runs (seen here: equal counts with the other core busy), so
two commits compare exactly; a count is not a time (it ignores cache misses and stalls), so
``bench --compare`` stays the judge of CPU time.
"""

from __future__ import annotations

import argparse
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def feed(path: Path, payloads: int, work: bool) -> int:
    """Feeds the capture's first ``payloads`` payloads (or only sets up); the changes fed."""
    from bench.hot_path import _settings
    from cdc.pipeline.loop import Pipeline, RunStats, Source
    from cdc.pipeline.spill import SpillStore
    from cdc.pipeline.values import TypeInfo, TypeRegistry

    try:
        from cdc.service.run import quiet_collector
    except ImportError:  # a commit from before it: the interpreter's default collector
        quiet_collector = None

    data = pickle.loads(path.read_bytes())
    keys: dict[int, tuple[str, ...] | None] = data["keys"]
    types: list[TypeInfo] = data["types"]

    class Lookups:  # what the catalog would answer, from the capture
        def primary_key(self, relation_id: int) -> tuple[str, ...] | None:
            return keys.get(relation_id)

        def resolve_types(self, registry: TypeRegistry, type_oids: list[int]) -> None:
            for info in types:
                if info.oid in type_oids:
                    registry.add(info)

        def rendered(self, _registry: TypeRegistry, changes: Any) -> Any:
            return changes

    core = Pipeline(
        _settings(),
        Source(proto_version=1, rules_by_relation_id={}, drain_target=None),
        Lookups(),
        start_lsn=0,
        skip_through=0,
        spill=SpillStore(),
        stats=RunStats(),
        clock_ms=lambda: 0.0,
        track_lag=False,
    )
    if quiet_collector is not None:
        quiet_collector()
    if work:
        for payload in data["payloads"][:payloads]:
            for flush in core.feed(payload, 0.0):
                if flush is not None and flush.checkpoint is not None:
                    core.durable(flush.checkpoint.end_lsn)
    return core.stats.changes


def _instructions(path: Path, payloads: int, mode: str) -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    command = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    command += ["-m", "bench.feed_instructions", str(path), "--payloads", str(payloads)]
    command += ["--inside", mode]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output: {done.stderr[-500:]}")
    return int(found.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.feed_instructions", description=__doc__)
    parser.add_argument("file", type=Path, help="a capture of python -m bench.hot_path --capture")
    parser.add_argument("--payloads", type=int, default=12_000)
    parser.add_argument("--inside", choices=("work", "setup"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside is not None:  # the run valgrind counts
        feed(args.file, args.payloads, work=args.inside == "work")
        return 0
    changes = feed(args.file, args.payloads, work=True)
    work = _instructions(args.file, args.payloads, "work")
    setup = _instructions(args.file, args.payloads, "setup")
    print(f"{(work - setup) / changes:,.0f} instructions per change ({changes:,} changes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
