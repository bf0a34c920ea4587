"""The quick chaos run (python -m tools.chaos --quick, about 1.5 minutes): a mixed workload that
writes its own ledger, the daemon SIGKILLed 22 times (6 of them between the sink commit and the
acknowledgement, through the failpoint), the source server restarted fast and immediate, the
daemon's walsender and sink backend terminated; the records must equal the ledger exactly.
What it does and the last long run: docs/reliability.md."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.crash]

REPO = Path(__file__).resolve().parents[2]


def test_quick_chaos_run_records_every_committed_change_exactly_once(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    out = tmp_path / "chaos.json"
    done = subprocess.run(
        [sys.executable, "-m", "tools.chaos", "--quick", "--seed", "20261126", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    print(done.stdout[-8000:], done.stderr[-4000:])  # shown with a failure
    assert out.exists(), done.stderr[-4000:]
    result = json.loads(out.read_text())
    for name in ("kills", "changes", "records", "chaos_s", "drain_s", "duration_s"):
        record_property(name, result[name])

    # exact: per (table, operation, key, xid), nothing missing, duplicated or extra
    assert (result["missing"], result["duplicates"], result["extra"]) == (0, 0, 0), result
    assert result["records"] == result["changes"] > 10_000
    assert result["toast_mismatches"] == 0
    assert result["drain_exit"] == 0 and result["drain_acknowledged"]
    # the tamper-evidence chain survived it all: unbroken, over every record
    assert result["chain_problem"] is None and result["chain_checked"] == result["records"]
    # ... under the chaos it was meant to have
    assert result["kills"] >= 20
    assert result["failpoint_kills"] >= 3 and result["sigkills"] >= 10
    assert result["restarts_fast"] >= 1 and result["restarts_immediate"] >= 1
    assert result["walsender_terminations"] >= 1 and result["sink_terminations"] >= 1
    # the daemon reconnected by itself after every restart and cut, never exited on its own
    assert result["unexpected_exits"] == [] and result["reconnect_failures"] == []
    assert result["supervisor_reconnects"] >= 6
    assert result["graceful_stop_exit"] == 0
    # ... and made progress while it was being disrupted, not only in the final drain
    assert result["records_before_drain"] > result["changes"] // 5
    # the workload was mixed
    for name in ("transactions_rolled_back", "savepoints_rolled_back", "large_transactions"):
        assert result[name] > 0, name
    assert result["ok"] and done.returncode == 0, result["verdict"]
