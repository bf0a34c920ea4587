"""Decoders side by side, in-process, on the same captured pgoutput payloads.

The payloads are what the server sends for a drain backlog (``pg_logical_slot_peek_binary
_changes`` on a copy of the slot, protocol 1: exactly the bytes after the XLogData header).
Each decoder turns every payload into its message objects; nothing else is timed. The runs
alternate (ours, theirs, ours...) and the median is kept, so that background load hits both.
Before timing, both decoders must agree on the values of the rows they decode.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from bench.python_peer import pypgoutput_decoders
from bench.stats import median
from cdc.pipeline.pgoutput import Decoder, Insert

ROW_CHANGE_KINDS = frozenset(b"IUDT")


def capture_payloads(
    conn: psycopg.Connection[Any], *, slot: str, publication: str, end_lsn: str, limit: int
) -> list[bytes]:
    """Up to about ``limit`` pgoutput messages of the slot (whole transactions), unconsumed."""
    rows = conn.execute(
        "SELECT data FROM pg_logical_slot_peek_binary_changes("
        "%s, %s::pg_lsn, %s, 'proto_version', '1', 'publication_names', %s)",
        (slot, end_lsn, limit, publication),
    ).fetchall()
    return [bytes(row[0]) for row in rows]


def _ours(payloads: Sequence[bytes]) -> None:
    decode = Decoder().decode
    for payload in payloads:
        decode(payload)


def _theirs(payloads: Sequence[bytes]) -> None:
    decoders = pypgoutput_decoders()
    for payload in payloads:
        decoder = decoders.get(payload[0])
        if decoder is not None:
            decoder(payload)


def check_agreement(payloads: Sequence[bytes], *, sample: int = 2000) -> int:
    """Both decoders read the same values from the first ``sample`` inserts; returns how many
    were compared. Raises on the first disagreement: a fast wrong decoder proves nothing."""
    decoders = pypgoutput_decoders()
    ours = Decoder()
    compared = 0
    for payload in payloads:
        message = ours.decode(payload)
        if not isinstance(message, Insert):
            continue
        theirs = decoders[payload[0]](payload)
        their_values = tuple(column.col_data for column in theirs.new_tuple.column_data)
        if message.new != their_values or message.relation_id != theirs.relation_id:
            raise AssertionError(
                f"decoders disagree on an insert into relation {message.relation_id}: "
                f"{message.new!r} vs {their_values!r}"
            )
        compared += 1
        if compared >= sample:
            break
    return compared


def compare_decoders(payloads: Sequence[bytes], *, repeats: int = 5) -> dict[str, Any]:
    """Changes per second of each decoder over the same payloads, and their ratio."""
    changes = sum(1 for payload in payloads if payload[0] in ROW_CHANGE_KINDS)
    agreed = check_agreement(payloads)
    timings: dict[str, list[float]] = {"cdc": [], "pypgoutput": []}
    runners: dict[str, Callable[[Sequence[bytes]], None]] = {"cdc": _ours, "pypgoutput": _theirs}
    for _ in range(repeats):
        for name, runner in runners.items():
            gc.collect()
            started = time.perf_counter()
            runner(payloads)
            timings[name].append(time.perf_counter() - started)
    seconds = {name: median(values) for name, values in timings.items()}
    rates = {name: changes / value for name, value in seconds.items()}
    return {
        "payloads": len(payloads),
        "payload_bytes": sum(len(payload) for payload in payloads),
        "row_changes": changes,
        "inserts_compared_equal": agreed,
        "repeats": repeats,
        "seconds": {name: round(value, 4) for name, value in seconds.items()},
        "changes_per_s": {name: round(value) for name, value in rates.items()},
        "us_per_change": {name: round(1e6 / value, 3) for name, value in rates.items()},
        "ratio_cdc_to_pypgoutput": round(rates["cdc"] / rates["pypgoutput"], 3),
    }
