"""The chaos command's own logic (python -m tools.chaos; the run itself is
tests/integration/test_chaos.py): the comparison that decides its verdict, and its plan."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tools.chaos import QUICK, Result, difference, main, make_lives, verdict


def test_difference_tells_missing_duplicated_and_extra_apart() -> None:
    ledger = Counter(
        {("t", "insert", "1", 10): 1, ("t", "update", "1", 11): 2, ("t", "delete", "2", 12): 1}
    )
    records = Counter(
        {("t", "insert", "1", 10): 2, ("t", "update", "1", 11): 1, ("u", "insert", "9", 13): 1}
    )
    missing, duplicated, extra = difference(ledger, records)
    assert missing == Counter({("t", "update", "1", 11): 1, ("t", "delete", "2", 12): 1})
    assert duplicated == Counter({("t", "insert", "1", 10): 1})
    assert extra == Counter({("u", "insert", "9", 13): 1})
    assert difference(ledger, Counter(ledger)) == (Counter(), Counter(), Counter())


def exact_result(**changes: object) -> Result:
    result = Result(changes=100, records=100, drain_exit=0, graceful_stop_exit=0)
    result.drain_acknowledged = True
    for name, value in changes.items():
        setattr(result, name, value)
    return result


def test_the_verdict_is_exact_only_when_nothing_differs_and_the_daemon_held_up() -> None:
    assert verdict(exact_result()) == (
        True,
        "EXACT: 100 records = 100 committed changes (0 missing, 0 duplicated, 0 extra)",
    )
    for changes, reason in [
        ({"missing": 1}, "1 missing"),
        ({"duplicates": 2}, "2 duplicated"),
        ({"extra": 3}, "3 extra"),
        ({"toast_mismatches": 1}, "TOASTed bodies differ"),
        ({"drain_exit": 8}, "drain exited 8"),
        ({"graceful_stop_exit": 1}, "SIGTERM"),
        ({"unexpected_exits": [{"life": 3}]}, "exited on its own 1 times"),
        ({"reconnect_failures": ["life 2"]}, "without a reconnect"),
        ({"drain_acknowledged": False}, "did not acknowledge"),
        ({"changes": 0, "records": 0}, "committed nothing"),
    ]:
        ok, text = verdict(exact_result(**changes))
        assert not ok and text.startswith("FAIL") and reason in text, (changes, text)


def test_the_quick_plan_kills_twenty_times_and_gives_every_disruption_to_a_plain_life() -> None:
    lives = make_lives(QUICK, random.Random(7))
    assert len(lives) == QUICK.kills >= 20
    assert sum(life.failpoint is not None for life in lives) == QUICK.failpoint_kills >= 1
    disruptions = Counter(kind for life in lives for kind in life.disruptions)
    assert disruptions == {
        "restart-fast": QUICK.fast_restarts,
        "restart-immediate": QUICK.immediate_restarts,
        "cut-walsender": QUICK.walsender_cuts,
        "cut-sink": QUICK.sink_cuts,
    }
    assert min(disruptions.values()) >= 1
    assert all(not life.disruptions for life in lives if life.failpoint is not None)


def test_failpoint_kills_cannot_exceed_kills() -> None:
    with pytest.raises(SystemExit):
        main(["--kills", "2", "--failpoint-kills", "3"])
