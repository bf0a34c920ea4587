"""Facts about where a benchmark ran, recorded with its results: numbers without the machine
they came from cannot be compared with anything."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.server import BenchServer

REPO = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 0.0


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_facts(server: BenchServer) -> dict[str, Any]:
    # The code measured: the commit, and how many files differed from it (the daemon may be
    # mid-change in a working tree; a number from a dirty tree says so).
    dirty = [line for line in _git("status", "--porcelain").splitlines() if line.strip()]
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": server.version(),
        "psycopg": _version("psycopg"),
        "activity_cdc": _version("activity-cdc"),
        "pypgoutput": _version("pypgoutput"),
        "psycopg2": _version("psycopg2") or _version("psycopg2-binary"),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_uncommitted_files": len(dirty),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }
