"""How big and how long each benchmark runs: one frozen dataclass, two presets, one flag each.

``QUICK`` is for CI smoke runs (minutes, numbers not meaningful); ``FULL`` produces the
published numbers. Every field is also a command-line flag (``--drain-changes 200000``), so a
single size can be changed without editing a preset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _size(help_text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": help_text}, **kwargs)


@dataclass(frozen=True)
class Sizes:
    rounds: int = _size("repetitions of each measurement, interleaved across modes", default=3)
    seed_users: int = _size(
        "users in the seeded platform (other tables scale with it)", default=20_000
    )
    clients: int = _size("pgbench clients of the write-path workload", default=4)
    write_rounds: int = _size(
        "rounds of the write path (short runs, many rounds: it is the noisiest part)", default=5
    )
    write_seconds: float = _size("seconds of each write-path pgbench run", default=20.0)
    write_rate: float = _size(
        "offered transactions/s of the write path (and of --compare's), the same for every "
        "mode, so that the application's latency and CPU per change are compared at one load "
        "below saturation; the TPS target is then not judged (0: as fast as possible)",
        default=0.0,
    )
    drain_changes: int = _size("row changes in each drain backlog (at least)", default=500_000)
    decoder_payloads: int = _size(
        "captured pgoutput messages the decoders are compared on", default=200_000
    )
    latency_seconds: float = _size("seconds of each offered-load latency run", default=20.0)
    latency_loads: tuple[int, ...] = _size(
        "offered loads in row changes per second", default=(1_000, 5_000, 20_000)
    )
    latency_clients: int = _size("pgbench clients of the latency runs", default=8)
    memory_txn_changes: int = _size(
        "row changes in the one big transaction of the memory test", default=1_000_000
    )
    memory_backlog_mb: int = _size("WAL megabytes of the memory test's backlog", default=100)
    query_records: int = _size("activity records in the query benchmark's store", default=5_000_000)
    query_runs: int = _size("executions of each monitor query", default=200)
    profile_changes: int = _size("row changes in the profiled drain's backlog", default=200_000)
    web_requests: int = _size("requests of each web API page and of the dashboard", default=200)
    web_live_rate: int = _size("records per second written while live mode is timed", default=1000)
    web_live_seconds: float = _size("seconds of the live-mode run", default=20.0)
    web_export_rows: int = _size("rows of the timed web export", default=1_000_000)

    def replace(self, **changes: Any) -> Sizes:
        return dataclasses.replace(self, **changes)


FULL = Sizes()

QUICK = Sizes(
    rounds=1,
    seed_users=2_000,
    clients=4,
    write_rounds=1,
    write_seconds=4.0,
    drain_changes=20_000,
    decoder_payloads=20_000,
    latency_seconds=4.0,
    latency_loads=(1_000, 5_000),
    latency_clients=4,
    memory_txn_changes=20_000,
    memory_backlog_mb=4,
    query_records=50_000,
    query_runs=20,
    profile_changes=10_000,
    web_requests=20,
    web_live_seconds=3.0,
    web_export_rows=20_000,
)

PRESETS: dict[str, Sizes] = {"full": FULL, "quick": QUICK}

# python -m bench --compare: two versions, interleaved; rounds >= 2 so that each goes first once.
# Quick judges a lever in a few minutes; full gives the figure for a commit message.
COMPARE_PRESETS: dict[str, Sizes] = {
    "quick": QUICK.replace(rounds=2, drain_changes=40_000, write_rounds=2, write_seconds=5.0),
    "full": FULL.replace(
        rounds=3, drain_changes=200_000, write_rounds=3, write_seconds=15.0, seed_users=20_000
    ),
}


def size_fields() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(Sizes))


def parse_size(field_: dataclasses.Field[Any], text: str) -> Any:
    """A flag's text → the field's type (tuples are comma-separated integers); ValueError
    for text that is not one, or a negative number."""
    default = field_.default
    if isinstance(default, tuple):
        values: tuple[float, ...] = tuple(int(part) for part in text.split(",") if part.strip())
    elif isinstance(default, float):
        values = (float(text),)
    else:
        values = (int(text),)
    if any(value < 0 for value in values):
        raise ValueError(f"negative: {text}")
    return values if isinstance(default, tuple) else values[0]
