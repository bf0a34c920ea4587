"""``cdc demo``: the whole tool on a throwaway local PostgreSQL, start to finish.

Starts an embedded cluster with logical replication, loads the 18-table demo platform, runs
``setup``, starts the daemon, drives the mixed platform workload, and reports what a user wants
to see: records arriving, lag, a breakdown, a sample record. Then it stops everything and
removes the cluster. It yields display lines; the CLI prints them (``cdc`` never prints).
"""

from __future__ import annotations

import json
import random
import threading
import time
import tomllib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from cdc.config import Settings, settings_from_mapping
from cdc.control.lag import slot_lag
from cdc.control.setup import setup
from cdc.demo.embedded import EmbeddedPostgres, free_port
from cdc.demo.workload import GroundTruth, load_platform_schema, run_workload, seed
from cdc.errors import CdcError
from cdc.service.run import Service
from cdc.sqlfiles import example_path


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float = 10.0
    clients: int = 2
    rng_seed: int = 1
    # Then serve the monitor and dashboard on the demo's records (and keep a slow workload
    # and the daemon running, so that live mode shows new records) until Ctrl-C.
    serve: bool = False
    port: int | None = None  # None: [web] port (8080)
    trickle_interval_s: float = 0.5  # between the slow workload's transactions


def run_demo(options: DemoOptions) -> Iterator[str]:
    yield "starting a throwaway PostgreSQL (wal_level=logical) ..."
    # The slot's WAL bounded as docs/operations.md asks of a real server, so that the demo's
    # daemon has no reason to warn about its throwaway cluster's settings.
    server = EmbeddedPostgres(settings={"max_wal_size": "1GB", "max_slot_wal_keep_size": "4GB"})
    server.start()
    try:
        yield from _demo(server, options)
    finally:
        server.stop()
        yield "removed the throwaway PostgreSQL"


def _prepare(
    server: EmbeddedPostgres, options: DemoOptions
) -> Generator[str, None, tuple[str, Settings, GroundTruth]]:
    """The platform loaded, cdc setup run and the platform seeded: its DSN, the settings and
    the seed's ground truth."""
    yield f"  running on 127.0.0.1:{server.port} (data in {server.datadir})"
    with psycopg.connect(server.dsn, autocommit=True) as admin:
        admin.execute("CREATE DATABASE platform")
    dsn = server.dsn_for("platform")
    with psycopg.connect(dsn, autocommit=True) as conn:
        load_platform_schema(conn)
    yield "loaded the demo platform: 18 tables (sql/demo/platform.sql)"

    config = tomllib.loads(example_path("platform.toml").read_text(encoding="utf-8"))
    # The demo's daemon serves its metrics on a free port: 9187, the default, may belong to a
    # real daemon on this host, and the demo must neither wait for it nor warn about it.
    metrics_port = str(free_port())
    settings = settings_from_mapping(
        config,
        origin="examples/platform.toml",
        env={"CDC_SOURCE_DSN": dsn, "CDC_METRICS__PORT": metrics_port},
    )
    yield "\n$ cdc setup   (config: examples/platform.toml)"
    report = setup(settings)
    for line in report.actions:
        yield f"  done: {line}"

    with psycopg.connect(dsn, autocommit=True) as conn:
        truth = seed(conn, scale=2, rng=random.Random(options.rng_seed))
    yield f"seeded {truth.total()} rows (users, issuers, projects, tokens, investors, ...)"

    return dsn, settings, truth


def _demo(server: EmbeddedPostgres, options: DemoOptions) -> Iterator[str]:
    dsn, settings, truth = yield from _prepare(server, options)
    yield "\n$ cdc run   (in the background) + a mixed platform workload "
    yield (
        f"  {options.clients} clients for {options.duration_s:.0f}s: sign-ups, KYC, "
        "subscriptions, approvals, transfers, distributions, documents, rollbacks ..."
    )
    service = Service(settings)  # as cdc run starts it: supervisor, heartbeat, slot watch
    failure: list[BaseException] = []

    def run_daemon() -> None:
        try:
            service.run()
        except BaseException as exc:  # reported below
            failure.append(exc)

    daemon_thread = threading.Thread(target=run_daemon, name="cdc-demo-daemon", daemon=True)
    daemon_thread.start()
    workload_truth: list[GroundTruth] = []
    workload = threading.Thread(
        target=lambda: workload_truth.append(
            run_workload(
                dsn,
                duration_s=options.duration_s,
                clients=options.clients,
                rng_seed=options.rng_seed,
            )
        ),
        name="cdc-demo-workload",
        daemon=True,
    )
    workload.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            yield from _progress(conn, settings, workload, failure)
            workload.join()
            yield from _catch_up(settings, failure)
            service.request_stop()
            daemon_thread.join(timeout=30)
            if failure:
                raise failure[0]
            if workload_truth:
                workload_truth[0].merge(truth)  # the seed's changes were captured too
            yield from _summary(conn, workload_truth[0] if workload_truth else None, settings)
    finally:
        service.request_stop()
        daemon_thread.join(timeout=30)
    if options.serve:
        yield from _serve(settings, dsn, options)
    else:
        port = options.port or settings.web.port
        yield (
            f"to see these records in the browser: cdc demo --serve, then open "
            f"http://127.0.0.1:{port}/monitor (and /dashboard)"
        )


def _progress(
    conn: psycopg.Connection[Any],
    settings: Settings,
    workload: threading.Thread,
    failure: list[BaseException],
) -> Iterator[str]:
    """A line a second while the workload runs: records so far, the slot's lag, the latest."""
    shown = 0
    while workload.is_alive() or shown == 0:
        time.sleep(1.0)
        if failure:
            raise failure[0]
        count = conn.execute("SELECT count(*) FROM activity.records").fetchone()
        total = count[0] if count else 0
        latest = conn.execute(
            "SELECT severity, summary FROM activity.records "
            "ORDER BY commit_lsn DESC, seq DESC LIMIT 2"
        ).fetchall()
        lag = slot_lag(settings)
        yield (
            f"  {total:>7} records | unconfirmed WAL {lag.unconfirmed_bytes or 0:>9} B"
            + "".join(f" | [{sev}] {summary}" for sev, summary in latest[:1])
        )
        shown += 1


def _catch_up(settings: Any, failure: list[BaseException]) -> Iterator[str]:
    with psycopg.connect(settings.source.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        target = row[0] if row else None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not failure:
            caught = conn.execute(
                "SELECT confirmed_flush_lsn >= %s FROM pg_replication_slots WHERE slot_name = %s",
                (target, settings.source.slot),
            ).fetchone()
            if caught and caught[0]:
                yield "workload done; the daemon has recorded and acknowledged everything"
                return
            time.sleep(0.1)
    if failure:
        raise failure[0]
    raise CdcError("the daemon did not catch up within 60 s")


def _summary(
    conn: psycopg.Connection[Any], truth: GroundTruth | None, settings: Any
) -> Iterator[str]:
    (records,) = conn.execute("SELECT count(*) FROM activity.records").fetchone() or (0,)
    if truth is not None:
        yield (
            f"\ncommitted (seed + workload): {truth.committed} transactions, {truth.total()} row "
            f"changes; {truth.rolled_back} transactions rolled back on purpose, not recorded"
        )
        yield (
            f"activity records: {records}; the other {truth.total() - records} changes were "
            "updates that only touched ignored columns (updated_at, last_seen_at)"
        )
    else:
        yield f"activity records: {records}"
    yield "\n$ cdc lag"
    lag = slot_lag(settings)
    yield (
        f"  slot {lag.slot}: unconfirmed {lag.unconfirmed_bytes} B, retained "
        f"{lag.retained_bytes} B, wal_status {lag.wal_status}"
    )
    yield "\nrecords by category and severity (top 12):"
    for category, severity, count in conn.execute(
        "SELECT category, severity, count(*) FROM activity.records "
        "GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 12"
    ):
        yield f"  {category:<22} {severity:<9} {count:>6}"
    row = conn.execute(
        "SELECT action, entity_type, entity_id, actor_id, summary, changes, occurred_at, "
        "commit_lsn::text, seq FROM activity.records WHERE operation = 'update' "
        "AND changes::text <> '{}' ORDER BY commit_lsn DESC LIMIT 1"
    ).fetchone()
    if row:
        names = ["action", "entity_type", "entity_id", "actor_id", "summary", "changes",
                 "occurred_at", "commit_lsn", "seq"]  # fmt: skip
        sample = dict(zip(names, row, strict=True))
        sample["occurred_at"] = sample["occurred_at"].isoformat()
        yield "\na recent update, as stored in activity.records:"
        for line in json.dumps(sample, indent=2, default=str).splitlines():
            yield f"  {line}"
    if settings.sink.hash_chain:
        yield from _verify_chain(settings)
    yield (
        "\nnext: point examples/platform.toml at your database (CDC_SOURCE_DSN), then "
        "`cdc setup`, `cdc run`, `cdc lag`; README.md explains each"
    )


def _verify_chain(settings: Settings) -> Iterator[str]:
    """``cdc verify-chain``, kept for the dashboard as the command keeps it."""
    from cdc.store.chain import record_verification, verify_chain

    yield "\n$ cdc verify-chain"
    with psycopg.connect(settings.sink_dsn) as conn:
        report = verify_chain(conn, settings.sink.schema_name, settings.sink.table_name)
        conn.autocommit = True
        record_verification(conn, settings.sink.schema_name, report, since=None)
    outcome = "intact" if report.problem is None else f"BROKEN: {report.problem}"
    yield f"  checked {report.checked:,} records: chain {outcome}"


def _serve(settings: Settings, dsn: str, options: DemoOptions) -> Iterator[str]:
    """``--serve``: the web server on the demo's store, the daemon again, and a slow workload,
    until the caller is interrupted (Ctrl-C); everything stops on the way out."""
    from cdc.web.server import access_for, serving

    access = access_for(settings, port=options.port)
    stop = threading.Event()
    service = Service(settings)
    threads = [
        threading.Thread(target=service.run, name="cdc-demo-daemon", daemon=True),
        threading.Thread(
            target=_trickle, args=(dsn, options, stop), name="cdc-demo-trickle", daemon=True
        ),
    ]
    try:
        with serving(settings, access):
            for thread in threads:
                thread.start()
            yield "\n$ cdc serve   (the monitor and dashboard on these records)"
            yield f"  monitor:   {access.url}/monitor"
            yield f"  dashboard: {access.url}/dashboard"
            if access.token_file is not None:
                yield f"  sign in with the token in {access.token_file} (readable by you only)"
            else:
                yield "  sign in with the token in CDC_WEB_TOKEN"
            yield (
                "  a slow workload and the daemon keep running: switch the monitor to Live to "
                "see records arrive. Ctrl-C stops everything."
            )
            while not stop.wait(1.0):
                pass
    finally:
        stop.set()
        service.request_stop()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=30)


def _trickle(dsn: str, options: DemoOptions, stop: threading.Event) -> None:
    """One workload transaction every ``trickle_interval_s`` until ``stop``."""
    seed = options.rng_seed
    while not stop.is_set():
        seed += 1
        try:
            run_workload(dsn, transactions=1, rng_seed=seed, stop=stop)
        except psycopg.Error:
            if stop.is_set():
                return  # the cluster is going away
            raise
        stop.wait(options.trickle_interval_s)
