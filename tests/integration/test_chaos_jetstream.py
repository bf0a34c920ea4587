"""The quick chaos run through JetStream (python -m tools.chaos --jetstream --quick, about 2
minutes): two sources with writers -> two daemons -> a 3-replica stream -> two ingest processes
-> one store, under 24 faults (SIGKILLs of daemons, some at the JetStream failpoints, and of
ingest processes; a NATS node stopped 10 s and one killed and restarted; walsenders and store
connections cut). The store must equal both sources' committed changes exactly and the stream
must hold each message once. What it does: tools/chaos_jetstream.py, docs/scale-out.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.crash, pytest.mark.jetstream]

REPO = Path(__file__).resolve().parents[2]


def test_quick_jetstream_chaos_run_stores_every_change_of_both_sources_exactly_once(
    tmp_path: Path,
) -> None:
    out = tmp_path / "chaos.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "tools.chaos", "--jetstream", "--quick",
            "--seed", "20261204", "--out", str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )  # fmt: skip
    print(done.stdout[-8000:], done.stderr[-4000:])  # shown with a failure
    assert out.exists(), done.stderr[-4000:]
    result = json.loads(out.read_text())
    # exact, per (table, operation, key, xid) over both sources' ledgers
    assert (result["missing"], result["duplicates"], result["extra"]) == (0, 0, 0), result
    assert result["records"] == result["changes"] > 5_000
    # the stream holds each message once, one per change
    assert result["stream_messages"] == result["stream_distinct_ids"] == result["changes"]
    assert result["chain_problem"] is None and result["chain_checked"] == result["records"]
    # ... under the chaos it was meant to have
    faults = result["faults"]
    assert result["fault_total"] >= 20
    assert faults["kill_daemon"] + faults["failpoint_daemon"] >= 8
    assert faults["kill_ingest"] >= 4
    assert faults["stop_node"] >= 1 and faults["kill_node"] >= 1
    assert faults["cut_walsender"] >= 1 and faults["cut_store"] >= 1
    assert faults.get("failpoint_daemon_hit", 0) >= 1
    # nobody exited on their own; SIGTERM and the drains were clean
    assert result["unexpected_exits"] == []
    assert result["graceful_stop_exits"] == [0, 0, 0, 0]
    assert result["drain_exits"] == [0, 0, 0]
    # the work flowed while the faults came, not only in the final drain
    assert result["records_before_drain"] > result["changes"] // 5
