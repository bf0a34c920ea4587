"""Two ways of running the same daemon beside a live workload, interleaved in one run.

* ``socket``: the daemon's two connections over TCP loopback, then over the server's Unix
  socket (docs/operations.md, "Where the daemon runs");
* ``pacing``: the fixed 10/25 ms read and flush intervals (``[batch] busy_rate = 0``), then
  the busy pacing that follows the records' rate (the default);
* ``walwriter``: the server's WAL writer as configured by default, then flushing every 10 ms
  (``wal_writer_delay = 10ms``, ``wal_writer_flush_after = 0``: set with ALTER SYSTEM and a
  reload before the window, reset after it), so that the store's WAL is flushed as it is
  written instead of by the next commit that needs it.

Each window starts a daemon, waits until it streams, runs the platform's mix with pgbench
(4 clients, at full speed or ``--rate`` TPS), waits until the daemon has recorded all of it,
then stops it. Per window: pgbench's TPS and its transactions' mean and p95 latency; CPU per
change of the walsender, the sink's backend and the daemon (every thread's
``/proc/<pid>/task/*/schedstat``); records per sink transaction. The variants alternate, the
first one changing every round; medians and the per-round ratios ``b ÷ a`` are printed.

    python -m bench.live_ab socket [--rounds 4] [--seconds 20] [--rate TPS]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from bench.cdc_process import SLOT, DaemonProcess, small_platform_source
from bench.cluster_cpu import backend_cpu_s, daemon_backends
from bench.process_probe import all_threads_cpu_seconds
from bench.server import BenchServer
from bench.slots import commit_marker, sink_transactions, wait_recorded
from bench.stats import ratios_line
from bench.workload import PLATFORM_MIX, PgbenchOptions, run_pgbench

DBNAME = "live_ab"
MEASURES = (
    "tps",
    "latency_mean_ms",
    "latency_p95_ms",
    "walsender",
    "sink",
    "daemon",
    "records_per_sink_txn",
)


@dataclass(frozen=True)
class Variant:
    name: str
    dsn: Callable[[BenchServer], str]  # the daemon's source and sink
    env: dict[str, str] = field(default_factory=dict)
    server_settings: dict[str, str] = field(default_factory=dict)  # sighup settings only


def _tcp(server: BenchServer) -> str:
    return server.dsn(DBNAME)


def _socket(server: BenchServer) -> str:
    return server.local_dsn(DBNAME)


PAIRS: dict[str, tuple[Variant, Variant]] = {
    "socket": (Variant("tcp", _tcp), Variant("socket", _socket)),
    "pacing": (
        Variant("fixed", _socket, {"CDC_BATCH__BUSY_RATE": "0"}),
        Variant("busy", _socket),
    ),
    "walwriter": (
        Variant("default", _socket),
        Variant(
            "eager",
            _socket,
            server_settings={"wal_writer_delay": "10ms", "wal_writer_flush_after": "0"},
        ),
    ),
}


def _apply_settings(server: BenchServer, settings: dict[str, str], *, reset: bool) -> None:
    """ALTER SYSTEM SET (or RESET) each setting, then reload: for settings a reload applies."""
    if not settings:
        return
    with server.connect() as conn:
        for name in settings:
            if reset:
                conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
            else:
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(name), sql.Literal(settings[name])
                    )
                )
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)  # the reload reaches every process


def window(
    server: BenchServer, variant: Variant, options: PgbenchOptions, params: dict[str, int]
) -> dict[str, float]:
    """One daemon's run beside one pgbench run; raises when either fails."""
    log = Path(tempfile.gettempdir()) / f"live_ab-{variant.name}.log"
    dsn = variant.dsn(server)
    _apply_settings(server, variant.server_settings, reset=False)
    daemon = DaemonProcess(dsn, log, sink_dsn=dsn, env=variant.env).start()
    try:
        with server.connect(DBNAME) as conn:
            daemon.wait_streaming(conn)
            wait_recorded(conn, commit_marker(conn))
            pids = daemon_backends(conn, dbname=DBNAME, slot=SLOT)
            records_before, flushes_before = sink_transactions(conn)
            server_before = backend_cpu_s(pids)
            daemon_before = all_threads_cpu_seconds(daemon.pid)
            result = run_pgbench(server.bindir, server.dsn(DBNAME), PLATFORM_MIX, params, options)
            wait_recorded(conn, commit_marker(conn))
            server_after = backend_cpu_s(pids)
            daemon_after = all_threads_cpu_seconds(daemon.pid)
            records, flushes = sink_transactions(conn)
    finally:
        exit_ = daemon.stop()
        _apply_settings(server, variant.server_settings, reset=True)
    if exit_.returncode != 0 or exit_.summary is None:
        raise RuntimeError(f"cdc run exited {exit_.returncode}: {exit_.stderr_tail}")
    changes = max(exit_.summary.changes, 1)
    return {
        "tps": result.tps,
        "latency_mean_ms": result.latency_ms.mean,
        "latency_p95_ms": result.latency_ms.p95,
        "walsender": (server_after["walsender"] - server_before["walsender"]) * 1e6 / changes,
        "sink": (server_after["sink_backend"] - server_before["sink_backend"]) * 1e6 / changes,
        "daemon": (daemon_after - daemon_before) * 1e6 / changes,
        "records_per_sink_txn": (records - records_before) / max(flushes - flushes_before, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pair", choices=sorted(PAIRS))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=None, help="TPS offered (default: full)")
    args = parser.parse_args(argv)
    first, second = PAIRS[args.pair]
    options = PgbenchOptions(clients=4, duration_s=args.seconds, rate_tps=args.rate)
    runs: dict[str, list[dict[str, float]]] = {first.name: [], second.name: []}
    server = BenchServer().start()
    try:
        _, counts = small_platform_source(server, DBNAME)
        for round_index in range(args.rounds):
            order = (first, second) if round_index % 2 == 0 else (second, first)
            for variant in order:
                figures = window(server, variant, options, counts.as_params())
                runs[variant.name].append(figures)
                shown = ", ".join(f"{key} {value:.2f}" for key, value in figures.items())
                print(f"round {round_index + 1} {variant.name}: {shown}", flush=True)
    finally:
        server.stop()
    for key in MEASURES:
        a = [run[key] for run in runs[first.name]]
        b = [run[key] for run in runs[second.name]]
        ratios = [y / x for x, y in zip(a, b, strict=True) if x]
        print(
            f"{key}: {first.name} {statistics.median(a):.2f}, {second.name} "
            f"{statistics.median(b):.2f}; {second.name} ÷ {first.name} {ratios_line(ratios)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
