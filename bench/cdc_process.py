"""activity-cdc as a user runs it: ``cdc setup`` and ``cdc run`` as subprocesses.

The config is the shipped ``examples/platform.toml``; the database comes in through
``CDC_SOURCE_DSN``, exactly as the README tells users to do. The daemon is a separate process
so that what we measure includes its interpreter, its threads and its memory, and nothing
of the benchmark's own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import psycopg

from bench.process_probe import ProcessUsage, UsageSampler
from cdc.sqlfiles import example_path

if TYPE_CHECKING:
    from bench.platform_db import SeedCounts
    from bench.server import BenchServer

CONFIG_PATH = example_path("platform.toml")
SLOT = "activity_cdc"  # [source] slot of examples/platform.toml
PUBLICATION = "activity_cdc"  # [source] publication of examples/platform.toml

# The summary line `cdc run` writes to stderr when it ends (cdc/cli/main.py).
_SUMMARY = re.compile(
    r"(?P<records>\d+) records from (?P<transactions>\d+) transactions "
    r"\((?P<changes>\d+) changes, (?P<skipped>\d+) transactions already recorded\) "
    r"in (?P<elapsed>[0-9.]+) ?(?P<unit>s|min|h|d)\b"
)
_UNIT_SECONDS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}  # cdc.human.human_seconds


def cdc_command(*args: str, config: Path = CONFIG_PATH) -> list[str]:
    return [sys.executable, "-m", "cdc", "--config", str(config), *args]


def cdc_env(
    source_dsn: str, *, sink_dsn: str | None = None, slot: str | None = None
) -> dict[str, str]:
    """The environment of a ``cdc`` command: the source (and, given, the sink: by default the
    source database, as in the example config) and, given, a slot name of its own."""
    env = dict(os.environ)
    env["CDC_SOURCE_DSN"] = source_dsn
    env.pop("CDC_SINK_DSN", None)
    if sink_dsn is not None:
        env["CDC_SINK_DSN"] = sink_dsn
    env.pop("CDC_SOURCE__SLOT", None)
    if slot is not None:
        env["CDC_SOURCE__SLOT"] = slot  # slot names are the cluster's, not the database's
    env.pop("CDC_CONFIG", None)
    return env


def cdc_setup(source_dsn: str, *, sink_dsn: str | None = None, slot: str | None = None) -> str:
    """``cdc setup``; returns what it printed. Raises with its stderr when it fails."""
    done = subprocess.run(
        cdc_command("setup"),
        env=cdc_env(source_dsn, sink_dsn=sink_dsn, slot=slot),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cdc setup failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class DaemonSummary:
    """What ``cdc run`` reports about itself when it ends."""

    records: int
    transactions: int
    changes: int
    elapsed_s: float


def parse_summary(output: str) -> DaemonSummary | None:
    """The last summary line in the output of ``cdc run``, if there is one."""
    matches = list(_SUMMARY.finditer(output))
    if not matches:
        return None
    match = matches[-1]
    return DaemonSummary(
        records=int(match["records"]),
        transactions=int(match["transactions"]),
        changes=int(match["changes"]),
        elapsed_s=float(match["elapsed"]) * _UNIT_SECONDS[match["unit"]],
    )


@dataclass(frozen=True)
class DaemonExit:
    returncode: int
    wall_s: float  # from spawning the process to its exit
    summary: DaemonSummary | None
    # VmHWM sampled from /proc/<pid>/status (0 if it ended too fast). Not wait4()'s ru_maxrss:
    # that also counts the forked copy of this (large) benchmark process before the exec.
    peak_rss_bytes: int
    cpu_s: float  # user + system CPU of the daemon process (all threads), from wait4()
    stderr_tail: str


class DaemonProcess:
    """``cdc run [--drain]`` in the background, with its resident memory watched."""

    def __init__(
        self,
        source_dsn: str,
        log_path: Path,
        *,
        drain: bool = False,
        config: Path = CONFIG_PATH,
        sink_dsn: str | None = None,
        slot: str = SLOT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.source_dsn = source_dsn
        self.env = dict(env or {})  # settings for this daemon only, e.g. CDC_BATCH__BUSY_RATE
        self.sink_dsn = sink_dsn
        self.slot = slot
        self.log_path = log_path
        self.drain = drain
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._sampler: UsageSampler | None = None
        self._started = 0.0

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> DaemonProcess:
        args = ["run", "--drain"] if self.drain else ["run"]
        self._log = self.log_path.open("wb")
        self._started = time.monotonic()
        self._proc = subprocess.Popen(
            cdc_command(*args, config=self.config),
            env=cdc_env(
                self.source_dsn,
                sink_dsn=self.sink_dsn,
                slot=None if self.slot == SLOT else self.slot,
            )
            | self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._sampler = UsageSampler(self._proc.pid).start()
        return self

    def running(self) -> bool:
        if self._proc is None or self._proc.returncode is not None:
            return False
        # Peek without reaping (WNOWAIT), so that _reap() still gets the rusage.
        info = os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return info is None

    def usage_now(self) -> ProcessUsage | None:
        return self._sampler.last if self._sampler else None

    def wait_streaming(self, conn: psycopg.Connection[Any], *, timeout_s: float = 60.0) -> None:
        """Until the daemon's walsender holds the slot (raises if the daemon died first)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"cdc run exited early: {self._tail()}")
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
        raise RuntimeError(f"cdc run did not start streaming within {timeout_s}s")

    def wait(self, *, timeout_s: float | None = None) -> DaemonExit:
        """Wait for the process to exit on its own (``--drain``)."""
        return self._reap(timeout_s)

    def stop(self, *, timeout_s: float = 60.0) -> DaemonExit:
        """SIGTERM: the daemon writes the batch in hand, acknowledges it and exits 0."""
        assert self._proc is not None
        if self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
        return self._reap(timeout_s)

    def _reap(self, timeout_s: float | None) -> DaemonExit:
        # wait4() rather than Popen.wait(): it also returns the child's own rusage, whose CPU
        # times cover every thread of the daemon.
        assert self._proc is not None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            pid, status, rusage = os.wait4(self._proc.pid, os.WNOHANG)
            if pid:
                self._proc.returncode = os.waitstatus_to_exitcode(status)
                return self._finish(rusage)
            if deadline is not None and time.monotonic() > deadline:
                self._proc.kill()
                _, status, rusage = os.wait4(self._proc.pid, 0)
                self._proc.returncode = os.waitstatus_to_exitcode(status)
                self._finish(rusage)
                raise RuntimeError(f"cdc run did not finish within {timeout_s}s: {self._tail()}")
            time.sleep(0.005)

    def kill(self) -> None:
        """Last resort on the way out of a failed benchmark."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            self._proc.wait()
        if self._sampler is not None:
            self._sampler.stop()
        if self._log is not None:
            self._log.close()

    def _finish(self, rusage: Any) -> DaemonExit:
        assert self._proc is not None and self._sampler is not None and self._log is not None
        wall_s = time.monotonic() - self._started
        usage = self._sampler.stop()
        self._log.close()
        summary = parse_summary(self.log_path.read_text(errors="replace"))
        return DaemonExit(
            returncode=self._proc.returncode if self._proc.returncode is not None else -1,
            wall_s=wall_s,
            summary=summary,
            peak_rss_bytes=usage.peak_rss_bytes if usage else 0,
            cpu_s=float(rusage.ru_utime + rusage.ru_stime),
            stderr_tail=self._tail(),
        )

    def _tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def small_platform_source(server: BenchServer, name: str) -> tuple[str, SeedCounts]:
    """The A/B benchmarks' source: the platform seeded for 2,000 users (``SeedCounts``), a
    database ``name`` copied from its template, ``cdc setup`` run on it. Returns its DSN and
    the seed counts (pgbench's variables)."""
    from bench.platform_db import SeedCounts, build_template, create_platform_db

    counts = SeedCounts.for_users(2000)
    build_template(server, counts)
    dsn = create_platform_db(server, name)
    cdc_setup(dsn)
    return dsn, counts
