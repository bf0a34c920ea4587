"""All the CPU a PostgreSQL cluster spent, from /proc: what the database pays for a workload.

A cluster is its postmaster and the postmaster's children (backends, walsenders, the
checkpointer, autovacuum...). The kernel folds a child that exited and was reaped into its
parent's ``cutime``/``cstime``, and a live child's CPU is its own ``utime``/``stime``; so the
whole cluster's CPU at an instant is the postmaster's utime+stime+cutime+cstime plus the
utime+stime of every live child. A child caught between its exit and its reaping (a zombie),
or reaped while we read, would be counted twice or not at all: a reading is taken again until
the children are the same before and after it and none of them is a zombie.

Processes that are not the server's (pgbench, the daemon) are not its children and never
count. The benchmark must run on the server's host, which ``bench`` always does.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg

from bench.context import log
from bench.process_probe import read_usage

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SINK_APPLICATION = "activity-cdc sink"  # the daemon's sink connection (cdc/pipeline/sink.py)


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields from the state on (field 3): the command name may hold spaces."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def postmaster_pid(conn: psycopg.Connection[Any]) -> int:
    """The parent of this connection's backend."""
    fields = _stat(conn.info.backend_pid)
    if fields is None:
        raise RuntimeError("the server's processes are not visible in /proc on this host")
    return int(fields[1])


def children(postmaster: int) -> set[int]:
    """Live (or not yet reaped) children of the postmaster: /proc has no children file here."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[1]) == postmaster:
                found.add(int(entry))
    return found


def cluster_cpu_s(postmaster: int, *, timeout_s: float = 10.0) -> float:
    """CPU seconds the whole cluster has used since the postmaster started."""
    deadline = time.monotonic() + timeout_s
    while True:
        before = children(postmaster)
        own = _stat(postmaster)
        if own is None:
            raise RuntimeError(f"postmaster {postmaster} is gone")
        ticks = sum(int(value) for value in own[11:15])  # utime stime cutime cstime
        settled = True
        for pid in before:
            fields = _stat(pid)
            if fields is None or fields[0] == "Z":
                settled = False
                break
            ticks += int(fields[11]) + int(fields[12])
        if settled and children(postmaster) == before:
            return ticks / _CLOCK_TICKS
        if time.monotonic() > deadline:
            raise RuntimeError("the server's children never held still long enough to be read")
        time.sleep(0.005)


def wait_clients_gone(
    conn: psycopg.Connection[Any],
    postmaster: int,
    known: set[int],
    *,
    application_name: str = "pgbench",
    timeout_s: float = 30.0,
) -> None:
    """Until no backend of a finished client (pgbench) is left, reaped: every child of the
    postmaster is one that was there before (``known``) or one the server lists as something
    else (an autovacuum worker, the daemon's sink). A backend that has left pg_stat_activity
    but not yet exited is neither, and is waited for."""
    deadline = time.monotonic() + timeout_s
    while True:
        listed = {
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name IS DISTINCT FROM %s",
                (application_name,),
            ).fetchall()
        }
        strays = children(postmaster) - known - listed
        if not strays:
            return
        if time.monotonic() > deadline:
            log.warning(
                "%d %s backend(s) still alive after %.0f s",
                len(strays),
                application_name,
                timeout_s,
            )
            return
        time.sleep(0.01)


def daemon_backends(conn: psycopg.Connection[Any], *, dbname: str, slot: str) -> dict[str, int]:
    """The pids of the daemon's server processes: the walsender holding its slot and its sink
    connection's backend."""
    found: dict[str, int] = {}
    row = conn.execute(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ).fetchone()
    if row and row[0] is not None:
        found["walsender"] = int(row[0])
    row = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
        (dbname, SINK_APPLICATION),
    ).fetchone()
    if row:
        found["sink_backend"] = int(row[0])
    return found


def backend_cpu_s(pids: dict[str, int]) -> dict[str, float]:
    """utime+stime of each named live process; a process gone already has no entry."""
    readings: dict[str, float] = {}
    for role, pid in pids.items():
        usage = read_usage(pid)
        if usage is not None:
            readings[role] = usage.cpu_s
    return readings
