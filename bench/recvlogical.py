"""The speed limit of any consumer of the stream: ``pg_recvlogical`` writing pgoutput to
/dev/null. It receives, acknowledges and discards; everything a real consumer does on top of
that (decode, map, write durably) is what the ratio to it measures."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen


@dataclass(frozen=True)
class RecvlogicalRun:
    wall_s: float


def run_pg_recvlogical(
    bindir: Path, dsn: str, *, slot: str, publication: str, end_lsn: str
) -> RecvlogicalRun:
    """Drain ``slot`` up to ``end_lsn`` (pgoutput, protocol 1) into /dev/null."""
    cmd = _command(bindir, dsn, slot, publication, f"--endpos={end_lsn}")
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=3600)
    wall_s = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"pg_recvlogical failed (exit {done.returncode}): {done.stderr.strip()}")
    return RecvlogicalRun(wall_s)


def stream_pg_recvlogical(bindir: Path, dsn: str, *, slot: str, publication: str) -> Popen[bytes]:
    """Stream ``slot`` into /dev/null until terminated: the consumer that does nothing, whose
    walsender's CPU is what the server's decoding alone costs (the write path's floor)."""
    return subprocess.Popen(
        _command(bindir, dsn, slot, publication),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _command(bindir: Path, dsn: str, slot: str, publication: str, *extra: str) -> list[str]:
    """pg_recvlogical streaming ``slot`` (pgoutput, protocol 1) into /dev/null."""
    return [
        str(bindir / "pg_recvlogical"),
        f"--dbname={dsn}",
        f"--slot={slot}",
        "--start",
        *extra,
        "--file=/dev/null",
        "--no-loop",
        "--option=proto_version=1",
        f"--option=publication_names={publication}",
        "--status-interval=10",
    ]
