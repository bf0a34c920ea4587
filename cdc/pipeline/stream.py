"""Stream: the replication connection, from WAL bytes on the wire to pgoutput payloads.

One psycopg 3 connection with ``replication="database"`` runs ``START_REPLICATION``; it is
then in COPY_BOTH state, which the high-level cursor API refuses, so reading and writing go
through the low-level ``pgconn`` calls. Reading never blocks inside libpq
(``get_copy_data(async_=1)``): the blocking call would hold the GIL and starve the sink's
writer thread. We wait on the socket with ``select`` instead, together with a wake-up fd the
daemon uses for its writer and for signals.

The stream knows two LSNs: ``received_lsn`` (the highest WAL end seen) and what the daemon
tells it is ``flushed_lsn`` (durable in the sink). Status updates report both; the server
moves the slot's ``confirmed_flush_lsn`` only to the flushed one.
"""

from __future__ import annotations

import contextlib
import logging
import select
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict

from cdc.dsn import connect_failure, describe_target, require_parsable
from cdc.errors import (
    CdcError,
    ConnectError,
    DecodeError,
    PrerequisiteError,
    PublicationNotFound,
    SlotInUse,
    SlotInvalidated,
    SlotNotFound,
    StreamError,
    first_line,
)
from cdc.lsn import format_lsn
from cdc.pipeline.core import compiled

log = logging.getLogger("cdc.stream")  # log lines keep the name they had

_WAL_END = struct.Struct("!Q")  # an XLogData's WAL end, after b'w' and its WAL start
_KEEPALIVE = struct.Struct("!QqB")  # after b'k': WAL end, send time, reply requested
_STATUS = struct.Struct("!cQQQqB")  # b'r', write, flush, apply, client time, reply requested

# Seconds between the Unix epoch and PostgreSQL's (2000-01-01).
PG_EPOCH_OFFSET_S = 946_684_800

# Session settings that make the text form of values predictable (see cdc.pipeline.values).
SESSION_OPTIONS = (
    "-c DateStyle=ISO,MDY -c TimeZone=UTC -c IntervalStyle=postgres "
    "-c extra_float_digits=1 -c bytea_output=hex"
)


@dataclass(slots=True)
class Keepalive:
    wal_end: int
    reply_requested: bool


# What a poll gives: an XLogData message as its payload alone (the pgoutput message; nothing
# else of its header is used but the WAL end, which moves ``received_lsn``), so that no object
# is built per message received; a primary keepalive as a Keepalive.
Frame = bytes | Keepalive


def _py_read_xlogdata(
    get_copy_data: Callable[[int], tuple[int, Any]], payloads: list[Frame]
) -> tuple[int, Any, int]:
    """Calls ``get_copy_data(1)`` and appends the payload of each XLogData message it gives
    (the bytes after the 25-byte header) to ``payloads``, until it gives anything else.
    Returns ``(nbytes, data, wal_end)``: what stopped it (``nbytes`` 0: nothing more to read;
    below 0: the end of the stream; else a message that is not a whole XLogData, for the
    caller) and the highest WAL end of the payloads taken (0: none). The reference of
    cdc/pipeline/_frames.pxi's ``read_xlogdata``."""
    wal_end = 0
    while True:
        nbytes, data = get_copy_data(1)
        if nbytes < 25 or len(data) < 25 or data[0] != 0x77:
            return nbytes, data, wal_end
        end = _WAL_END.unpack_from(data, 9)[0]
        if end > wal_end:
            wal_end = end
        payloads.append(bytes(data[25:]))


XLogDataReader = Callable[[Callable[[int], tuple[int, Any]], list[Frame]], tuple[int, Any, int]]
_read_xlogdata: XLogDataReader = (
    compiled.read_xlogdata if compiled is not None else _py_read_xlogdata
)


def pg_now_us() -> int:
    return int((time.time() - PG_EPOCH_OFFSET_S) * 1_000_000)


def server_error(exc_or_result: Any, *, slot: str, publication: str) -> CdcError:
    """Turn a server error (a psycopg exception or a failed PGresult) into our hierarchy."""
    if isinstance(exc_or_result, psycopg.Error):
        sqlstate = exc_or_result.sqlstate or ""
        message = (exc_or_result.diag.message_primary or str(exc_or_result)).strip()
        detail = exc_or_result.diag.message_detail or ""
    else:
        fields = pq.DiagnosticField
        sqlstate = (exc_or_result.error_field(fields.SQLSTATE) or b"").decode()
        message = (exc_or_result.error_field(fields.MESSAGE_PRIMARY) or b"").decode().strip()
        detail = (exc_or_result.error_field(fields.MESSAGE_DETAIL) or b"").decode()
    text = f"{message} (SQLSTATE {sqlstate})" if sqlstate else message
    if sqlstate == "42704" and "publication" in message:
        return PublicationNotFound(
            f'publication "{publication}" does not exist on the source; run "cdc setup"'
        )
    if sqlstate == "42704":
        return SlotNotFound(f'replication slot "{slot}" does not exist; run "cdc setup"')
    if sqlstate == "55006":
        return SlotInUse(
            f"{text}: another process is streaming from the slot; stop it, or run this "
            "daemon as a standby that waits for the slot: cdc run without --drain waits while "
            "the slot is busy and takes over when it is free"
        )
    if (
        "invalidated" in message
        or "invalidated" in detail
        or "can no longer get changes" in message
    ):
        return SlotInvalidated(
            f"{text}. The server removed WAL this slot still needed, so changes were lost "
            "upstream. Recover: record the gap, drop the slot (cdc teardown), run cdc setup "
            "and reconcile the missing window from the source tables."
        )
    if sqlstate == "42501" or "permission denied" in message or "must be superuser" in message:
        return PrerequisiteError(
            f"{text}; the source role needs the REPLICATION attribute "
            "(ALTER ROLE <role> REPLICATION) and SELECT on the published tables"
        )
    if "wal_level" in message:
        return PrerequisiteError(
            f"{text}; set wal_level = logical in postgresql.conf and restart the server"
        )
    if sqlstate.startswith("08") or sqlstate == "57P01" or not sqlstate:
        return ConnectError(
            f"replication connection lost: {text or 'server closed the connection'}"
        )
    return StreamError(f"the server ended the replication stream: {text}")


class ReplicationStream:
    def __init__(
        self,
        dsn: str,
        *,
        slot: str,
        publication: str,
        application_name: str = "activity-cdc",
        decoding_work_mem: str = "8MB",
    ) -> None:
        self._dsn = dsn
        self.slot = slot
        self.publication = publication
        self._application_name = application_name
        self._decoding_work_mem = decoding_work_mem
        self._conn: psycopg.Connection[Any] | None = None
        self.received_lsn = 0
        self.flushed_lsn = 0
        self.last_status_at = 0.0

    def open(self, start_lsn: int, *, proto_version: int = 1) -> None:
        """Connect and start streaming from ``start_lsn`` (the server starts from the slot's
        confirmed position if that is later). From protocol version 2 on, large transactions
        are streamed while they run (``streaming 'on'``) instead of spilled on the server."""
        require_parsable(self._dsn, "source")
        # TCP keepalives, unless the DSN sets its own: a vanished server is noticed in about a
        # minute instead of the kernel's two hours.
        params: dict[str, Any] = {
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        with contextlib.suppress(psycopg.ProgrammingError):  # connect() reports a bad DSN
            params.update(conninfo_to_dict(self._dsn))
        try:
            self._conn = psycopg.connect(
                self._dsn,
                **{k: v for k, v in params.items() if k.startswith("keepalives")},
                replication="database",
                autocommit=True,
                application_name=self._application_name,
                options=(
                    f"{SESSION_OPTIONS} -c logical_decoding_work_mem={self._decoding_work_mem}"
                ),
                connect_timeout=10,
            )
        except psycopg.Error as exc:
            raise ConnectError(
                f"cannot open a replication connection to {describe_target(self._dsn)}: "
                f"{connect_failure(exc, self._dsn)}; check [source] dsn or CDC_SOURCE_DSN, and "
                "that pg_hba.conf allows replication connections for this role"
            ) from None
        conn = self._conn
        publication = sql.Identifier(self.publication).as_string(conn)
        streaming = ", streaming 'on'" if proto_version >= 2 else ""
        command = sql.SQL(
            "START_REPLICATION SLOT {slot} LOGICAL {lsn} (proto_version {proto}, "
            "publication_names {publications}, messages 'true'{streaming})"
        ).format(
            slot=sql.Identifier(self.slot),
            lsn=sql.SQL(format_lsn(start_lsn)),  # hex/hex, never user text
            proto=sql.Literal(str(proto_version)),
            publications=sql.Literal(publication),
            streaming=sql.SQL(streaming),
        )
        try:
            conn.execute(command)
        except psycopg.Error as exc:
            self.close()
            raise server_error(exc, slot=self.slot, publication=self.publication) from None
        self.received_lsn = max(self.received_lsn, start_lsn)
        self.flushed_lsn = max(self.flushed_lsn, start_lsn)
        log.info(
            "streaming from slot %s at %s (protocol %d)",
            self.slot,
            format_lsn(start_lsn),
            proto_version,
        )

    @property
    def socket(self) -> int:
        assert self._conn is not None
        return self._conn.pgconn.socket

    def poll(self, timeout_s: float, wake_fds: Sequence[int] = ()) -> list[Frame]:
        """Wait up to ``timeout_s`` for data (or a ``wake_fds`` byte); return the frames that
        arrived (possibly none)."""
        assert self._conn is not None, "stream is not open"
        pgconn = self._conn.pgconn
        frames = self._read_available(pgconn)
        if frames:
            return frames
        fds = [pgconn.socket, *wake_fds]
        readable, _, _ = select.select(fds, [], [], max(timeout_s, 0.0))
        if pgconn.socket in readable:
            return self._read_available(pgconn)
        return []

    def has_data(self) -> bool:
        """Whether more bytes wait on the socket right now (no waiting, no reading)."""
        assert self._conn is not None, "stream is not open"
        readable, _, _ = select.select([self._conn.pgconn.socket], [], [], 0)
        return bool(readable)

    def _read_available(self, pgconn: Any) -> list[Frame]:
        try:
            pgconn.consume_input()
        except psycopg.OperationalError as exc:
            raise ConnectError(f"replication connection lost: {first_line(exc)}") from None
        frames: list[Frame] = []
        get_copy_data = pgconn.get_copy_data
        while True:
            # The XLogData messages ('w'), read in C; what stops it is handled here.
            nbytes, data, wal_end = _read_xlogdata(get_copy_data, frames)
            if wal_end > self.received_lsn:
                self.received_lsn = wal_end
            if nbytes == 0:
                return frames
            if nbytes < 0:
                self._raise_stream_end(pgconn)
            kind = data[0]
            if kind == 0x77:  # 'w' XLogData, shorter than its header
                raise DecodeError("XLogData", "header", 1, f"need 25 bytes, got {nbytes}")
            elif kind == 0x6B:  # 'k' primary keepalive
                if nbytes < 18:
                    raise DecodeError("Keepalive", "header", 1, f"need 18 bytes, got {nbytes}")
                wal_end, _, reply = _KEEPALIVE.unpack_from(data, 1)
                if wal_end > self.received_lsn:
                    self.received_lsn = wal_end
                frames.append(Keepalive(wal_end, bool(reply)))
            else:
                raise DecodeError("CopyData", "kind", 0, f"unknown replication message {kind!r}")

    def _raise_stream_end(self, pgconn: Any) -> None:
        result = pgconn.get_result()
        while pgconn.get_result() is not None:
            pass
        if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
            raise server_error(result, slot=self.slot, publication=self.publication)
        message = pgconn.error_message.decode(errors="replace").strip()
        raise ConnectError(f"replication connection lost: {message or 'stream ended'}")

    def send_status(self, *, reply_requested: bool = False) -> None:
        """Standby status update: write = received, flush = apply = durable."""
        assert self._conn is not None
        flushed = self.flushed_lsn
        message = _STATUS.pack(
            b"r",
            max(self.received_lsn, flushed),
            flushed,
            flushed,
            pg_now_us(),
            1 if reply_requested else 0,
        )
        pgconn = self._conn.pgconn
        try:
            if pgconn.put_copy_data(message) != 1 or pgconn.flush() != 0:
                raise ConnectError(
                    "replication connection lost while sending status: "
                    + pgconn.error_message.decode(errors="replace").strip()
                )
        except psycopg.OperationalError as exc:
            raise ConnectError(f"replication connection lost: {first_line(exc)}") from None
        self.last_status_at = time.monotonic()

    def close(self) -> None:
        """End the stream cleanly when possible (so the walsender exits at once)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            pgconn = conn.pgconn
            if pgconn.status == pq.ConnStatus.OK:
                pgconn.put_copy_end()
                pgconn.flush()
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline:
                    select.select([pgconn.socket], [], [], 0.1)
                    pgconn.consume_input()
                    nbytes, _ = pgconn.get_copy_data(1)
                    if nbytes < 0:
                        while pgconn.get_result() is not None:
                            pass
                        break
        except (psycopg.Error, OSError, ValueError):
            pass  # closing anyway
        finally:
            conn.close()
