"""The write workload: pgbench running the platform's transactions (bench/pgbench/*.sql).

pgbench rather than a Python client: the load generator must not be the bottleneck, and it
must cost every mode the same. Each script is one application transaction of the demo
platform (sign-up, KYC, subscriptions, transfers, payouts, documents, notifications...);
``PLATFORM_MIX`` weighs them like ``cdc.demo.workload.WORKLOAD_MIX``. Latencies come from
pgbench's per-transaction log, not its averages, so that p50/p99 are real percentiles.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from bench.stats import Percentiles, percentiles

SCRIPT_DIR = Path(__file__).parent / "pgbench"

#: (script, weight): the mixed OLTP workload over the 18 tables.
PLATFORM_MIX: tuple[tuple[str, int], ...] = (
    ("register_user", 6),
    ("touch_user", 8),
    ("use_api_key", 4),
    ("submit_kyc", 5),
    ("review_kyc", 5),
    ("add_wallet", 3),
    ("subscribe", 9),
    ("decide_subscription", 8),
    ("allocate_tokens", 6),
    ("transfer_tokens", 7),
    ("schedule_distribution", 3),
    ("pay_distribution", 5),
    ("request_redemption", 3),
    ("settle_redemption", 3),
    ("upload_document", 4),
    ("edit_document", 2),
    ("delete_document", 1),
    ("read_notification", 4),
    ("delete_notifications", 4),
    ("change_roles", 2),
    ("rotate_api_key", 2),
    ("launch_project", 1),
    ("update_investor_profile", 2),
    ("review_compliance", 3),
)

#: A fixed-shape transaction (exactly 4 row changes, each one an activity record), so that an
#: offered load in changes per second is a pgbench rate in transactions per second.
LATENCY_SCRIPT = "latency_flow"
LATENCY_CHANGES_PER_TXN = 4

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)


@dataclass(frozen=True)
class PgbenchResult:
    tps: float  # committed transactions per second, as pgbench reports it
    transactions: int
    failed: int  # gave up after --max-tries (deadlocks, serialization failures)
    duration_s: float
    latency_ms: Percentiles  # per transaction, from the transaction log
    schedule_lag_ms: Percentiles | None  # with a rate: how late transactions started


@dataclass(frozen=True)
class PgbenchOptions:
    clients: int
    duration_s: float | None = None
    transactions_per_client: int | None = None
    rate_tps: float | None = None  # offered load; None: as fast as possible
    max_tries: int = 10


def run_pgbench(
    bindir: Path,
    dsn: str,
    mix: Sequence[tuple[str, int]],
    variables: Mapping[str, int],
    options: PgbenchOptions,
) -> PgbenchResult:
    """Run pgbench with the weighted scripts; raises when pgbench fails."""
    params = conninfo_to_dict(dsn)
    threads = max(1, min(options.clients, 2))
    with tempfile.TemporaryDirectory(prefix="cdc-bench-pgbench-") as workdir:
        prefix = Path(workdir) / "txn"
        cmd = [
            str(bindir / "pgbench"),
            "--no-vacuum",
            "--protocol=prepared",
            f"--client={options.clients}",
            f"--jobs={threads}",
            f"--max-tries={options.max_tries}",
            "--log",
            f"--log-prefix={prefix}",
            f"--host={params.get('host', '127.0.0.1')}",
            f"--port={params.get('port', '5432')}",
            f"--username={params.get('user', 'postgres')}",
        ]
        if options.duration_s is not None:
            cmd.append(f"--time={max(1, round(options.duration_s))}")
        elif options.transactions_per_client is not None:
            cmd.append(f"--transactions={options.transactions_per_client}")
        else:
            raise ValueError("give duration_s or transactions_per_client")
        if options.rate_tps is not None:
            cmd.append(f"--rate={options.rate_tps:.1f}")
        for name, weight in mix:
            cmd.append(f"--file={SCRIPT_DIR / name}.sql@{weight}")
        for key, value in variables.items():
            cmd.append(f"--define={key}={value}")
        cmd.append(str(params.get("dbname", "postgres")))
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"pgbench failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"
            )
        latencies_us, lags_us, elapsed_s = _read_transaction_logs(
            Path(workdir), with_schedule_lag=options.rate_tps is not None
        )
    tps_match = _TPS.search(done.stdout)
    failed_match = _FAILED.search(done.stdout)
    processed_match = _PROCESSED.search(done.stdout)
    return PgbenchResult(
        tps=float(tps_match.group(1)) if tps_match else 0.0,
        transactions=int(processed_match.group(1)) if processed_match else len(latencies_us),
        failed=int(failed_match.group(1)) if failed_match else 0,
        duration_s=elapsed_s,
        latency_ms=percentiles([value / 1000 for value in latencies_us]),
        schedule_lag_ms=(
            percentiles([value / 1000 for value in lags_us])
            if options.rate_tps is not None and lags_us
            else None
        ),
    )


def _read_transaction_logs(
    workdir: Path, *, with_schedule_lag: bool
) -> tuple[list[float], list[float], float]:
    """Latencies and schedule lags (µs) of committed transactions, and the seconds they span.

    A line: client_id transaction_no time script_no time_epoch time_us [schedule_lag] [retries];
    ``time`` is "failed" or "skipped" for transactions that did not commit, and schedule_lag is
    there only with --rate (retries only with --max-tries other than 1).
    """
    latencies: list[float] = []
    lags: list[float] = []
    first_start = float("inf")
    last_end = float("-inf")
    for path in workdir.glob("txn.*"):
        with path.open(encoding="ascii") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) < 6 or not fields[2].isdigit():
                    continue
                latency = float(fields[2])
                latencies.append(latency)
                end = int(fields[4]) + int(fields[5]) / 1e6
                first_start = min(first_start, end - latency / 1e6)
                last_end = max(last_end, end)
                if with_schedule_lag and len(fields) >= 7:
                    lags.append(float(fields[6]))
    return latencies, lags, max(0.0, last_end - first_start) if latencies else 0.0
