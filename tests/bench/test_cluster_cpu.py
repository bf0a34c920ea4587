"""bench.cluster_cpu counts a process tree's CPU whether a child is alive or reaped, and never
reads a tree while a child is a zombie (its CPU would be counted twice or lost). The test
process stands in for the postmaster: its children are real processes burning real CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.cluster_cpu import children, cluster_cpu_s

BURN_S = 0.4
# Burns CPU, says so, then waits for stdin to close: alive until we let it go.
CHILD = (
    "import sys, time\n"
    f"end = time.process_time() + {BURN_S}\n"
    "while time.process_time() < end: pass\n"
    "print('burnt', flush=True)\n"
    "sys.stdin.read()\n"
)


def _burning_child() -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline() == "burnt\n"
    return child


def test_a_childs_cpu_counts_while_it_lives_and_after_it_is_reaped() -> None:
    me = os.getpid()
    before = cluster_cpu_s(me)
    child = _burning_child()
    assert child.pid in children(me)
    alive = cluster_cpu_s(me)
    assert alive - before >= BURN_S * 0.9
    child.communicate()  # let it go, and reap it: its CPU moves into our cutime/cstime
    assert child.pid not in children(me)
    reaped = cluster_cpu_s(me)
    assert reaped >= alive
    assert reaped - before < BURN_S * 3  # counted once, not twice


def test_a_zombie_child_is_never_read() -> None:
    child = _burning_child()
    assert child.stdin is not None
    child.stdin.close()
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    try:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="never held still"):
            cluster_cpu_s(os.getpid(), timeout_s=0.2)
        assert time.monotonic() - started < 5
    finally:
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
