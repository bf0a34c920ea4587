"""What every benchmark section gets: the server, the sizes, the seed, where to put logs."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg

from bench.platform_db import SeedCounts
from bench.server import BenchServer
from bench.sizes import Sizes

log = logging.getLogger("bench")


@dataclass(frozen=True)
class BenchContext:
    server: BenchServer
    sizes: Sizes
    seed: SeedCounts
    logdir: Path  # daemon logs and other by-products of this run

    def pgbench_variables(self) -> dict[str, int]:
        return self.seed.as_params()


def rotated(items: tuple[str, ...], round_index: int) -> list[str]:
    """The order of the modes in a round: each mode goes first once every len(items) rounds,
    so that no mode always runs right after another (or always on a warmer machine)."""
    shift = round_index % len(items)
    return list(items[shift:] + items[:shift])


def target(
    name: str,
    value: float,
    op: Literal[">=", "<="],
    threshold: float,
    unit: str,
) -> dict[str, Any]:
    """One promise checked against one measured value (missing values never pass)."""
    met = not math.isnan(value) and (value >= threshold if op == ">=" else value <= threshold)
    return {
        "name": name,
        "value": round(value, 4) if not math.isnan(value) else None,
        "op": op,
        "threshold": threshold,
        "unit": unit,
        "met": met,
    }


def platform_change_counts(conn: psycopg.Connection[Any]) -> int:
    """Rows inserted, updated and deleted so far in the 18 platform tables (not audit_log):
    pgbench's backends report their counts when they exit."""
    row = conn.execute(
        "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint "
        "FROM pg_stat_user_tables WHERE schemaname = 'public' AND relname <> 'audit_log'"
    ).fetchone()
    return int(row[0]) if row else 0
