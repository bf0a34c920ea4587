"""How the sink's records go over COPY: in PostgreSQL's binary format whenever the store's
columns are of the binary rows' types (read when the sink opens, and again after a refusal),
else, and for a flush the binary rows do not carry, in its text format.

The encoders are cdc.pipeline.copy_lines (pure); :class:`CopyFormat` holds the two statements,
the store's column types, and sends one COPY. Used by :class:`cdc.pipeline.sink.Sink`.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.generators import copy_end, copy_to

from cdc.connect import server_message
from cdc.errors import CdcError, SinkError
from cdc.pipeline.activity import ActivityRecord
from cdc.pipeline.batching import Flush
from cdc.pipeline.copy_lines import ChainHead, encode_binary_rows, encode_copy_rows, jsonb_mask
from cdc.pipeline.refusals import is_row_error, sink_failure
from cdc.pipeline.sink_statements import simple_query
from cdc.sqlfiles import sql_text

# COPY data goes to libpq in pieces of at most this many bytes (as psycopg's own Copy does: one
# put_copy_data of a buffer larger than libpq can queue would be retried forever).
COPY_PIECE = 128 * 1024


class CopyFormat:
    """The COPY of one records table: its statements (text and binary) over ``columns``, and
    which format the store's column types take; not thread-safe beyond reading ``jsonb``."""

    def __init__(self, schema: str, table: str, columns: tuple[str, ...]) -> None:
        self.schema = schema
        self.table = table
        self.columns = columns
        self.text_sql = sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
            sql.Identifier(schema),
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
        )
        self.binary_sql = self.text_sql + sql.SQL(" (FORMAT binary)")
        # The two statements as bytes once a connection rendered them (render); until then,
        # rendered at each COPY.
        self._text: bytes | sql.Composed = self.text_sql
        self._binary: bytes | sql.Composed = self.binary_sql
        # The documents stored as jsonb (copy_lines.jsonb_mask); None: the store's columns are
        # not the binary rows' types (or were not read yet), the records go as text.
        self.jsonb: int | None = None

    def render(self, conn: psycopg.Connection[Any]) -> None:
        """The statements as bytes for ``conn``: a ``Composed`` is rendered again at each
        execute, its identifiers quoted through libpq (Sink._render)."""
        self._text = self.text_sql.as_bytes(conn)
        self._binary = self.binary_sql.as_bytes(conn)

    def read_types(self, conn: psycopg.Connection[Any]) -> None:
        """Whether the records go in binary, and which documents are jsonb: from the types of
        the store's columns, in the connection's open transaction."""
        types = conn.execute(
            sql_text("store/column_types.sql"), {"schema": self.schema, "table": self.table}
        ).fetchall()
        self.jsonb = jsonb_mask({str(name): str(kind) for name, kind in types}, self.columns)

    def types_changed(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether the store's column types changed since the rows were encoded for them
        (read again)."""
        before = self.jsonb
        try:
            self.read_types(conn)
        except psycopg.Error:
            return False
        return self.jsonb != before

    def binary_rows(
        self, records: list[ActivityRecord], head: ChainHead | None
    ) -> tuple[bytes, ChainHead | None] | None:
        """The records as binary COPY (chained from ``head`` unless None), or None: send text."""
        if self.jsonb is None:
            return None
        return encode_binary_rows(records, head, datetime.now(UTC), self.jsonb)

    def plain_rows(self, records: list[ActivityRecord]) -> tuple[str | bytes, bool]:
        """The records without the chain: their COPY data, and whether it is binary."""
        found = self.binary_rows(records, None)
        if found is not None:
            return found[0], True
        return encode_copy_rows(records), False

    def send(self, conn: psycopg.Connection[Any], data: str | bytes, binary: bool) -> None:
        """One COPY of ``data`` in the sink's open transaction.

        Through libpq, as psycopg's ``Cursor.copy`` would, without its cursor, its copy object
        and their context managers (~100 µs of the daemon per flush, ~2 µs per record at the
        live path's flushes: bench.sink_libpq_ab); a refusal is psycopg's error all the same
        (the line in its context: dead letters). Outside a transaction (the chain off: the
        COPY is its first statement) psycopg's way, which opens it."""
        statement = self._binary if binary else self._text
        pgconn = conn.pgconn
        if (
            conn.autocommit
            or pgconn.transaction_status != pq.TransactionStatus.INTRANS
            or not isinstance(statement, bytes)
        ):
            with conn.cursor() as cur, cur.copy(statement) as copy:
                copy.write(data)
            return
        payload = data.encode(conn.info.encoding) if isinstance(data, str) else data
        with conn.lock:
            started = simple_query(conn, statement)[-1]
            if started.status != pq.ExecStatus.COPY_IN:
                raise psycopg.InterfaceError(
                    f"COPY started as {pq.ExecStatus(started.status).name}"
                )
            view = memoryview(payload)
            try:
                for start in range(0, len(view), COPY_PIECE):
                    conn.wait(copy_to(pgconn, view[start : start + COPY_PIECE], False))
            except BaseException:
                # Out of COPY mode, the statement failed, as psycopg's Copy leaves it: the
                # caller rolls the transaction back on a connection that still answers.
                with contextlib.suppress(Exception):
                    conn.wait(copy_end(pgconn, b"activity-cdc: the COPY was abandoned"))
                raise
            conn.wait(copy_end(pgconn, None))  # a refusal raises psycopg's error here

    def failure(self, conn: psycopg.Connection[Any], flush: Flush, exc: psycopg.Error) -> CdcError:
        """The error of a failed write (refusals.sink_failure), the transaction rolled back; a
        row refused because the store's column types changed under the sink (cdc setup's
        migration 0022 while the daemon runs) says so: a new sink sends the new types."""
        if not is_row_error(exc):
            return sink_failure(flush, exc)
        changed = self.types_changed(conn)
        with contextlib.suppress(psycopg.Error):
            conn.rollback()  # the types were read in a transaction of their own
        if not changed:
            return sink_failure(flush, exc)
        return SinkError(
            f"the sink refused a batch of {len(flush.records)} records: {server_message(exc)}: "
            "the store's column types changed while the daemon ran (cdc setup's migrations); "
            "nothing of it was written or acknowledged: restart the daemon, it sends the new "
            "types (the changes are still in the slot)"
        )
