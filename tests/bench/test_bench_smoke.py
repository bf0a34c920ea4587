"""The benchmark suite runs end to end (python -m bench, tiny sizes): every part completes and
its results, the markdown table and the chart are written. Timings are never asserted: CI
machines are too noisy for that, and the numbers of a tiny run mean nothing."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bench, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
PARTS = ("write", "drain", "latency", "memory", "queries", "web", "profile", "jetstream")

# Smaller than --quick: the whole suite in about a minute.
TINY = [
    "--rounds=1",
    "--write-rounds=1",
    "--seed-users=500",
    "--clients=2",
    "--write-seconds=2",
    "--drain-changes=4000",
    "--decoder-payloads=4000",
    "--latency-seconds=3",
    "--latency-loads=500",
    "--latency-clients=2",
    "--memory-txn-changes=4000",
    "--memory-backlog-mb=2",
    "--query-records=20000",
    "--query-runs=5",
    "--profile-changes=3000",
    "--web-requests=3",
    "--web-live-seconds=1",
    "--web-export-rows=2000",
]


def test_quick_benchmark_writes_every_section_and_both_reports(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", f"--out={out}", *TINY],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,  # a minute on a quiet machine; 5+ on a shared, loaded one
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    results = json.loads((out / "results.json").read_text())
    for part in PARTS:
        assert results[part]["status"] == "ok", (part, results[part].get("error"))
    # the floor: pg_recvlogical's walsender decoded the same workload, and was measured
    assert results["write"]["database_cpu_per_change"]["walsender_floor_us"] > 0
    assert results["write"]["modes"]["recvlogical"]["tps"] > 0
    # every CDC run wrote its records in sink transactions the store counts
    for mode in ("cdc", "cdc_apart"):
        assert results["write"]["modes"][mode]["records_per_sink_transaction"] >= 1
    assert "records per sink transaction" in (out / "results.md").read_text()
    latency = results["latency"]["loads"]["500"]
    assert latency["source_txn_p99_ms"] > 0  # the source's own transactions, for comparison
    for run in results["latency"]["runs"]["500"]:
        assert run["polls"] == run["poll_ms"]["count"] > 0
    for fact in ("cores", "memory_gib", "postgresql", "python"):
        assert results["machine"][fact]
    assert (out / "results.md").read_text().startswith("# activity-cdc benchmark results")
    assert (out / "results.png").read_bytes().startswith(b"\x89PNG")


def test_compare_runs_both_versions_on_the_same_changes_and_finds_equal_records(
    tmp_path: Path,
) -> None:
    """``--compare HEAD``: the committed code against this checkout (the same code, or the
    change under test): both drain the same backlog, record every change, and their records
    are compared column by column."""
    out = tmp_path / "compare"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--compare=HEAD",
            "--quick",
            f"--out={out}",
            "--rounds=2",
            "--seed-users=500",
            "--drain-changes=3000",
            "--write-rounds=1",
            "--write-seconds=2",
            "--clients=2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "head/ref" in done.stdout

    results = json.loads((out / "compare.json").read_text())
    for drain in results["drain"]["rounds"]:
        ref, head = drain["consumers"]["ref"], drain["consumers"]["head"]
        assert ref["changes"] == head["changes"] == drain["row_changes"] > 0
        assert ref["records"] == head["records"] > 0
        for side in (ref, head):
            # measured: the drain's CPU and the empty drain's (start-up) beside it; their
            # difference over a 3,000-change drain is within the noise, so not its sign
            assert side["cpu_s"] > 0 and side["floor_cpu_s"] > 0
            assert math.isfinite(side["daemon_cpu_us_per_change"])
            assert side["sink_backend_cpu_s"] > 0
    records = results["drain"]["records"]
    assert records["different_columns"] == [], records
    assert "new" in records["identical_columns"]
    write = results["write"]["summary"]
    assert set(write["tps"]) == {"none", "ref", "head"}
    assert all(tps > 0 for tps in write["tps"].values())
