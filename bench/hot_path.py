"""The daemon's per-change Python work, stage by stage, in-process on captured changes.

    python -m bench.hot_path --capture FILE [--changes 100000]   # build a backlog, save it
    python -m bench.hot_path FILE [--repeats 7]                  # time the stages on it

``--capture`` builds a platform backlog exactly as the drain benchmark does (a throwaway
server, the seeded platform, ``cdc setup``, the platform workload), takes the pgoutput
payloads from a copy of the slot (``pg_logical_slot_peek_binary_changes``), and saves them
with what the daemon would have looked up in the catalog (primary keys, user-defined types).
Timing needs no server: the same file times any version of the code (before/after a change).

Stages, each over all the changes of the file, the best of ``--repeats`` runs in CPU time of
this process (on a shared machine the least disturbed run is the closest to the code's cost):
``decode`` (cdc.pipeline.pgoutput), ``assemble`` (cdc.pipeline.changes), ``map``
(cdc.pipeline.activity + cdc.pipeline.values), ``batch`` (cdc.pipeline.batching), then per batch
of 5,000 records what the sink's threads do in Python: ``encode`` (the plain COPY text,
cdc.pipeline.sink), ``chain`` (the COPY lines chained and hashed: what the daemon sends with
``hash_chain = true``, the default; the total counts it instead of ``encode``) and ``rollups``
(cdc.pipeline.rollups counting). Not here: the daemon loop itself and the waits
(``python -m bench profile`` has them).
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdc.config import Settings, settings_from_mapping
from cdc.pipeline.activity import ActivityMapper, ActivityRecord
from cdc.pipeline.batching import Batcher, Checkpoint
from cdc.pipeline.changes import ChangeAssembler, TransactionEnd
from cdc.pipeline.rollups import count_records
from cdc.pipeline.sink import ChainHead, encode_chained_rows, encode_copy_rows
from cdc.pipeline.spill import SpillStore
from cdc.pipeline.values import TypeInfo, TypeRegistry
from cdc.sqlfiles import example_path

BATCH = 5000


def capture(path: Path, changes: int) -> None:
    from bench.backlog import build_backlog
    from bench.cdc_process import PUBLICATION, SLOT, cdc_setup
    from bench.context import BenchContext
    from bench.decoder_speed import capture_payloads
    from bench.platform_db import SeedCounts, build_template, create_platform_db
    from bench.server import running_server
    from bench.sizes import FULL
    from bench.slots import copy_slot
    from cdc.pipeline.catalog import Catalog

    with running_server() as server:
        seed = SeedCounts.for_users(FULL.seed_users)
        build_template(server, seed)
        ctx = BenchContext(server, FULL, seed, path.parent)
        dsn = create_platform_db(server, "hot_path")
        cdc_setup(dsn)
        with server.connect("hot_path") as conn:
            copy_slot(conn, SLOT, "bench_capture")
            backlog = build_backlog(ctx, conn, "hot_path", dsn, SLOT, min_changes=changes)
            payloads = capture_payloads(
                conn,
                slot="bench_capture",
                publication=PUBLICATION,
                end_lsn=backlog.end_lsn,
                limit=changes * 3,
            )
        # What the daemon asks the catalog, asked once here.
        catalog = Catalog(dsn)
        registry = TypeRegistry()
        keys: dict[int, tuple[str, ...] | None] = {}
        decode = _decoder()
        for payload in payloads:
            message = decode(payload)
            columns = getattr(message, "columns", None)
            if payload[:1] == b"R" and columns is not None:
                catalog.resolve_types(registry, [c.type_oid for c in columns])
                keys[message.relation_id] = catalog.primary_key(message.relation_id)
        catalog.close()
        types = list(registry._info.values())  # a snapshot for offline runs
        server.drop_database("hot_path")
    path.write_bytes(pickle.dumps({"payloads": payloads, "keys": keys, "types": types}))
    print(f"saved {len(payloads)} payloads ({backlog.row_changes} row changes) to {path}")


def _decoder() -> Callable[[bytes], Any]:
    from cdc.pipeline.pgoutput import Decoder

    return Decoder().decode


def _registry(types: list[TypeInfo]) -> TypeRegistry:
    registry = TypeRegistry()
    for info in types:
        registry.add(info)
    return registry


def _settings() -> Settings:
    """examples/platform.toml, the config the benchmarks run the daemon with."""
    text = example_path("platform.toml").read_text(encoding="utf-8")
    return settings_from_mapping(tomllib.loads(text), env={"CDC_SOURCE_DSN": "host=unused"})


def run_stages(data: dict[str, Any]) -> dict[str, float]:
    """Seconds of each stage over every payload of the file (one run)."""
    payloads: list[bytes] = data["payloads"]
    keys: dict[int, tuple[str, ...] | None] = data["keys"]
    settings = _settings()
    seconds: dict[str, float] = {}

    decode = _decoder()
    started = time.process_time()
    messages = [decode(payload) for payload in payloads]
    seconds["decode"] = time.process_time() - started

    assembler = ChangeAssembler(lambda oid, _s, _t: keys.get(oid), spill=SpillStore())
    feed = assembler.feed
    started = time.process_time()
    changes = [
        change
        for message, payload in zip(messages, payloads, strict=True)
        for change in feed(message, payload)
    ]
    seconds["assemble"] = time.process_time() - started

    mapper = ActivityMapper(settings, types=_registry(data["types"]))
    map_change = mapper.map
    started = time.process_time()
    records = [map_change(change) for change in changes if type(change) is not TransactionEnd]
    seconds["map"] = time.process_time() - started

    batcher = Batcher(max_rows=BATCH, max_delay_ms=200)
    flushes = []
    it = iter(records)
    started = time.process_time()
    for change in changes:
        if type(change) is TransactionEnd:
            txn = change.transaction
            flush = batcher.commit(Checkpoint(txn.commit_lsn, change.end_lsn, txn.commit_time), 0.0)
        else:
            record = next(it)
            flush = batcher.add(record, 0.0) if record is not None else None
        if flush is not None:
            flushes.append(flush)
            if flush.checkpoint is not None:
                batcher.durable(flush.checkpoint.end_lsn)
    seconds["batch"] = time.process_time() - started

    kept: list[ActivityRecord] = [r for r in records if r is not None]
    batches = [kept[i : i + BATCH] for i in range(0, len(kept), BATCH)]
    started = time.process_time()
    for batch in batches:
        encode_copy_rows(batch)
    seconds["encode"] = time.process_time() - started
    head = ChainHead(b"\0" * 32, 0)
    recorded_at = datetime(2026, 12, 4, tzinfo=UTC)
    started = time.process_time()
    for batch in batches:
        _, head = encode_chained_rows(batch, head, recorded_at)
    seconds["chain"] = time.process_time() - started
    started = time.process_time()
    for batch in batches:
        count_records(batch)
    seconds["rollups"] = time.process_time() - started
    seconds["_changes"] = sum(1 for change in changes if type(change) is not TransactionEnd)
    seconds["_records"] = len(kept)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hot_path", description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--capture", action="store_true", help="build a backlog, save it")
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    if args.capture:
        capture(args.file, args.changes)
        return 0
    data = pickle.loads(args.file.read_bytes())
    runs = []
    for _ in range(args.repeats):
        gc.collect()
        runs.append(run_stages(data))
    changes = runs[0]["_changes"]
    print(f"{changes} row changes, {runs[0]['_records']} records, best of {args.repeats} runs")
    total = 0.0
    for stage in ("decode", "assemble", "map", "batch", "encode", "chain", "rollups"):
        us = min(run[stage] for run in runs) * 1e6 / changes
        if stage != "encode":  # the daemon sends the chained form (hash_chain = true)
            total += us
        print(f"  {stage:<9} {us:7.2f} us/change")
    print(f"  {'total':<9} {total:7.2f} us/change (chained, the default; not the plain encode)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
