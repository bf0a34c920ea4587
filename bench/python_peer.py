"""The Python peer: what a Python team would write without activity-cdc.

psycopg2's replication connection (``LogicalReplicationConnection``) receives pgoutput, and
``pypgoutput``'s message decoders (both on PyPI) turn each payload into objects. It
acknowledges every 10 s and writes nothing: it only receives and decodes, so it is an upper
bound for such a consumer. (pypgoutput's own ``LogicalReplicationReader`` adds a process hop
per message and a pydantic model per row; we use only its decoders, its fastest layer.)

Run in a subprocess, like the daemon, so that each consumer has an interpreter of its own:
``python -m bench.python_peer DSN SLOT PUBLICATION END_LSN`` prints one JSON object.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FEEDBACK_INTERVAL_S = 10.0
ROW_CHANGE_KINDS = ("I", "U", "D", "T")


def pypgoutput_decoders() -> dict[int, Callable[[bytes], Any]]:
    """First byte of a pgoutput message → pypgoutput's decoder class for it."""
    from pypgoutput import decoders  # type: ignore[import-untyped]

    return {
        ord("B"): decoders.Begin,
        ord("C"): decoders.Commit,
        ord("R"): decoders.Relation,
        ord("I"): decoders.Insert,
        ord("U"): decoders.Update,
        ord("D"): decoders.Delete,
        ord("T"): decoders.Truncate,
    }


def parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def consume(dsn: str, slot: str, publication: str, end_lsn: int) -> dict[str, Any]:
    """Receive and decode until the server says everything up to ``end_lsn`` was sent."""
    import psycopg2  # type: ignore[import-untyped]
    import psycopg2.extras  # type: ignore[import-untyped]

    decode = pypgoutput_decoders()
    kinds: Counter[str] = Counter()
    payload_bytes = 0
    conn = psycopg2.connect(dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(
        slot_name=slot,
        decode=False,
        options={"proto_version": "1", "publication_names": publication},
    )
    last_feedback = time.monotonic()
    last_lsn = 0
    while True:
        message = cur.read_message()
        if message is None:
            # Data messages carry their own LSN as wal_end; only a keepalive carries the
            # server's send position, and it comes after everything sent before it. Once it
            # passes the end, nothing committed before the end is left (as pg_recvlogical).
            if cur.wal_end >= end_lsn:
                break
            select.select([cur], [], [], 1.0)
            continue
        payload = message.payload
        payload_bytes += len(payload)
        kind = payload[0]
        decoder = decode.get(kind)
        if decoder is not None:
            decoder(payload)
        kinds[chr(kind)] += 1
        last_lsn = max(last_lsn, message.data_start)
        now = time.monotonic()
        if now - last_feedback >= FEEDBACK_INTERVAL_S:
            cur.send_feedback(flush_lsn=last_lsn)
            last_feedback = now
    cur.send_feedback(flush_lsn=last_lsn)
    conn.close()
    return {
        "messages": sum(kinds.values()),
        "changes": sum(kinds[kind] for kind in ROW_CHANGE_KINDS),
        "kinds": dict(kinds),
        "payload_bytes": payload_bytes,
    }


@dataclass(frozen=True)
class PeerRun:
    wall_s: float
    messages: int
    changes: int
    kinds: dict[str, int]
    payload_bytes: int


def run_python_peer(dsn: str, *, slot: str, publication: str, end_lsn: str) -> PeerRun:
    """The peer in a subprocess; wall time from spawn to exit, as for the other consumers."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bench.python_peer", dsn, slot, publication, end_lsn],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    wall_s = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"python peer failed (exit {done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    return PeerRun(
        wall_s=wall_s,
        messages=int(result["messages"]),
        changes=int(result["changes"]),
        kinds={str(k): int(v) for k, v in result["kinds"].items()},
        payload_bytes=int(result["payload_bytes"]),
    )


def main(argv: list[str]) -> int:
    dsn, slot, publication, end_lsn = argv
    print(json.dumps(consume(dsn, slot, publication, parse_lsn(end_lsn))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
