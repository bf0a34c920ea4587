"""Watch a running process from outside: peak resident memory and CPU time, from /proc.

``VmHWM`` in /proc/<pid>/status is the kernel's own high-water mark of the resident set, so
a sample taken late still sees an earlier peak; we sample anyway (every 20 ms) because the
numbers vanish when the process exits. CPU time is utime + stime of /proc/<pid>/stat,
threads included.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessUsage:
    peak_rss_bytes: int  # VmHWM at the last sample before the process ended
    cpu_s: float  # user + system CPU seconds at the last sample


def cpu_seconds(pid: int) -> float | None:
    """The process's time on a CPU in seconds, from the scheduler's nanoseconds
    (``/proc/<pid>/schedstat``); None once it has exited. The ticks of ``/proc/<pid>/stat``
    (10 ms) are too coarse for the short runs the A/B benchmarks time."""
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as handle:
            return int(handle.read().split()[0]) / 1e9
    except OSError:
        return None


def all_threads_cpu_seconds(pid: int) -> float:
    """CPU seconds of every thread of a live process: ``/proc/<pid>/schedstat`` covers only
    its main thread, and ``/proc/<pid>/stat``'s ticks are 10 ms coarse."""
    total = 0.0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as handle:
                total += int(handle.read().split()[0]) / 1e9
        except OSError:
            continue  # a thread that ended while we read
    return total


def read_usage(pid: int) -> ProcessUsage | None:
    """The process's VmHWM and CPU seconds now; None once it has exited."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            status = handle.read()
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            stat = handle.read()
    except OSError:
        return None
    peak_kb = 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            peak_kb = int(line.split()[1])
            break
    if not peak_kb:
        return None  # a zombie: its memory is gone already
    # Fields after the command name (which may hold spaces) start at field 3.
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu_ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ProcessUsage(peak_kb * 1024, cpu_ticks / _CLOCK_TICKS)


class UsageSampler:
    """Samples a process in a background thread until :meth:`stop`; keeps the last reading."""

    def __init__(self, pid: int, *, interval_s: float = 0.02) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.last: ProcessUsage | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"usage-{pid}", daemon=True)

    def start(self) -> UsageSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            usage = read_usage(self.pid)
            if usage is None:
                return
            self.last = usage
            self._stop.wait(self.interval_s)

    def stop(self) -> ProcessUsage | None:
        self._stop.set()
        self._thread.join()
        return self.last
