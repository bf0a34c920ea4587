"""Spill: the messages of streamed, still-open transactions, kept on disk until they end.

With protocol version 2+ and ``streaming 'on'``, the server sends a large transaction in blocks
while it is still running; it may yet abort, whole or a subtransaction of it. Nothing of it may
be recorded before its Stream Commit, and holding it in memory would make memory grow with the
transaction. Each top-level transaction gets a temporary file of length-prefixed raw payloads,
tagged with the (sub)transaction id the message carried, so an aborted subtransaction's
messages are left out when the file is read back at commit.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Iterator
from typing import IO

_HEADER = struct.Struct("!II")  # payload length, (sub)transaction id
_BUFFER_BYTES = 1 << 20


class SpilledTransaction:
    __slots__ = ("aborted_subxids", "bytes_written", "count", "file")

    def __init__(self, spill_dir: str | None) -> None:
        # Closed by close(), when the transaction commits or aborts (not a with-block: it
        # lives across many stream blocks).
        self.file: IO[bytes] = tempfile.TemporaryFile(  # noqa: SIM115
            dir=spill_dir, buffering=_BUFFER_BYTES
        )
        self.aborted_subxids: set[int] = set()
        self.count = 0
        self.bytes_written = 0

    def append(self, subxid: int, payload: bytes) -> None:
        self.file.write(_HEADER.pack(len(payload), subxid))
        self.file.write(payload)
        self.count += 1
        self.bytes_written += _HEADER.size + len(payload)

    def replay(self) -> Iterator[bytes]:
        """The payloads in arrival order, without those of aborted subtransactions."""
        file = self.file
        file.flush()
        file.seek(0)
        aborted = self.aborted_subxids
        header = _HEADER
        for _ in range(self.count):
            length, subxid = header.unpack(file.read(header.size))
            payload = file.read(length)
            if subxid not in aborted:
                yield payload

    def close(self) -> None:
        self.file.close()


class SpillStore:
    """Open streamed transactions by top-level xid."""

    def __init__(self, spill_dir: str | None = None) -> None:
        self.spill_dir = spill_dir
        self._open: dict[int, SpilledTransaction] = {}

    def __len__(self) -> int:
        return len(self._open)

    def start(self, xid: int, first_segment: bool) -> None:
        if first_segment and xid in self._open:
            # The server streams it again from the start (a new session): forget the old copy.
            self._open.pop(xid).close()
        if xid not in self._open:
            self._open[xid] = SpilledTransaction(self.spill_dir)

    def append(self, xid: int, subxid: int, payload: bytes) -> None:
        self._open[xid].append(subxid, payload)

    def abort(self, xid: int, subxid: int) -> None:
        spilled = self._open.get(xid)
        if spilled is None:
            return
        if subxid == xid:
            self._open.pop(xid).close()
        else:
            spilled.aborted_subxids.add(subxid)

    def take(self, xid: int) -> SpilledTransaction | None:
        return self._open.pop(xid, None)

    def close(self) -> None:
        for spilled in self._open.values():
            spilled.close()
        self._open.clear()
