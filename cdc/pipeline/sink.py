"""Sink: activity records into PostgreSQL with COPY, and the checkpoint in the same transaction.

The contract (what makes "nothing lost, nothing duplicated" hold):

* A :class:`~cdc.pipeline.batching.Flush` with a checkpoint is written and committed in ONE
  transaction: the records and the position of the last source commit they cover. Only after
  that commit returns does the daemon acknowledge the position to the source.
* Chunks without a checkpoint (a source transaction larger than a batch) go into the same
  open sink transaction; nothing is visible or acknowledged until the chunk with the
  checkpoint commits. If the process dies in between, the sink transaction rolls back and the
  source transaction is streamed again from the slot.
* On start the daemon reads the checkpoint and skips source transactions at or below it, so a
  crash between the sink commit and the acknowledgement does not write records twice. The
  unique key ``(commit_lsn, seq)`` would refuse such a duplicate anyway.

The sink session forces ``synchronous_commit = on``: an acknowledged LSN must mean the
records are on disk, whatever the server's default.

COPY sends PostgreSQL's binary format, or text where binary cannot (cdc/pipeline/sink_copy.py).

With ``[sink] hash_chain`` (the default) the sink chains the records itself as it encodes them:
each COPY row carries ``recorded_at``, ``chain_position``, ``prev_hash`` and ``hash`` =
sha256(prev_hash || canonical text) over exactly the values it sends (cdc.store.chain), and COPY
goes straight into the records: no staging table, no second statement. The chain's head is read
``FOR UPDATE`` at the start of each sink transaction (a second writer of the same records
waits, then chains after it: the chain never forks) and moved in that transaction, with the
checkpoint. Nothing of the chain lives only in memory: a rolled-back transaction leaves the
head where it was, and the next one reads it again.

A change the sink refuses stops the daemon naming it (COPY's line), or with ``[sink]
on_refused = "dead_letter"`` is parked in ``dead_letters`` (docs/operations.md).

:class:`~cdc.pipeline.sink_writer.SinkWriter` runs the sink in background threads so that
decoding the next changes overlaps with the server writing the previous batch (psycopg releases
the GIL during I/O).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from cdc import failpoints
from cdc.dsn import connect_failure, describe_target, require_parsable
from cdc.errors import ConnectError, SinkError
from cdc.lsn import Lsn, format_lsn
from cdc.pipeline.activity import RECORD_COLUMNS, ActivityRecord
from cdc.pipeline.batching import Checkpoint, Flush
from cdc.pipeline.copy_lines import (
    CHAINED_COLUMNS,
    ChainHead,
    PreparedFlush,
    encode_chained_rows,
    encode_copy_rows,
)
from cdc.pipeline.refusals import (
    MAX_PARKED_PER_FLUSH,
    connection_lost,
    is_row_error,
    park_refused,
    refused_line,
    sink_failure,
)
from cdc.pipeline.rollups import upsert_parameters
from cdc.pipeline.sink_copy import CopyFormat
from cdc.pipeline.sink_statements import SinkStatements
from cdc.pipeline.sinks import StoredCheckpoint
from cdc.store.chain import iso_utc_text

# the COPY encoders (and a flush prepared with them) live in cdc.pipeline.copy_lines
__all__ = [
    "CHAINED_COLUMNS",
    "ChainHead",
    "PreparedFlush",
    "Sink",
    "encode_chained_rows",
    "encode_copy_rows",
]

log = logging.getLogger("cdc.sink")  # log lines keep the name they had


class Sink:
    """One connection to the sink database; not thread-safe (the SinkWriter owns it). A
    :class:`~cdc.pipeline.sinks.RecordSink`."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str,
        table: str,
        slot: str,
        hash_chain: bool = True,
        dead_letter: bool = False,
        source_id: str = "",
    ) -> None:
        self._dsn = dsn
        # '<system id>:<slot>': the records' source_id (sql/migrations/0025_record_sources.sql)
        self.source_id = source_id
        self.schema = schema
        self.table = table
        self.slot = slot
        self.hash_chain = hash_chain
        self.dead_letter = dead_letter
        self._conn: psycopg.Connection[Any] | None = None
        self._format = CopyFormat(schema, table, CHAINED_COLUMNS if hash_chain else RECORD_COLUMNS)
        self._sql = SinkStatements(schema, table)
        # The chain's head in the open sink transaction (None: not read yet in this one), and
        # the commit LSN and seq of the last record chained in it (None: the head has not moved).
        self._head: ChainHead | None = None
        self._head_at: tuple[str, int] | None = None
        # The head :meth:`prepare` chains the next flush from: where the last prepared flush
        # left it (None: unknown, the write encodes). Only the encoder thread touches it.
        self._predicted: ChainHead | None = None

    def open(self) -> None:
        require_parsable(self._dsn, "sink")
        try:
            self._conn = psycopg.connect(
                self._dsn, application_name="activity-cdc sink", connect_timeout=10
            )
            self._conn.execute("SET synchronous_commit = on")
            # The COPY rows' text is sent as UTF-8 bytes (cdc/pipeline/_copy_lines.pyx), in
            # binary as in text, so the session must read it as UTF-8, whatever the default.
            self._conn.execute("SET client_encoding TO 'UTF8'")
            # A daemon that vanished mid-batch must not hold the rows (and their locks) of the
            # records the next daemon writes again.
            self._conn.execute("SET idle_in_transaction_session_timeout = '10min'")
            # The store's source_id column defaults to this: the COPY lines need no field for it.
            self._conn.execute(
                "SELECT set_config('activity_cdc.source_id', %s, false)", (self.source_id,)
            )
            self._format.read_types(self._conn)
            self._conn.commit()
            self._format.render(self._conn)
            self._sql.render(self._conn)
        except psycopg.Error as exc:
            raise ConnectError(
                f"cannot connect to the sink database {describe_target(self._dsn)}: "
                f"{connect_failure(exc, self._dsn)}; check [sink] dsn or CDC_SINK_DSN"
            ) from None
        if self.hash_chain:
            self._open_chain()

    def _open_chain(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            head = conn.execute(self._sql.lock_head_sql).fetchone()
            conn.commit()
            if head is not None:
                self._predicted = ChainHead(bytes(head[0]), int(head[1]))
        except psycopg.errors.UndefinedTable:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            raise SinkError(
                f"the activity store {self.schema} has no hash chain yet "
                f'({self.schema}.{self.table}_chain_head is missing); run "cdc setup"'
            ) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            raise SinkError(
                f"{exc.diag.message_primary}; the hash chain needs SELECT, UPDATE on "
                f"{self.schema}.{self.table}_chain_head: grant what "
                '"cdc setup --print-role-sql" lists'
            ) from None
        except psycopg.Error as exc:
            # The session may be gone (terminated between opening and here): then the
            # rollback fails too, and the loss is what the caller must see, to reconnect.
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            raise connection_lost(exc) or SinkError(
                f"cannot prepare the hash chain: {exc}"
            ) from None
        if head is None:
            raise SinkError(
                f"{self.schema}.{self.table}_chain_head has no row (it holds the chain's head "
                'from "cdc setup" on); restore it from a backup, or run "cdc verify-chain"'
            )

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.rollback()
            self._conn.close()
            self._conn = None

    def execute(self, query: sql.Composed, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """One statement in the open sink transaction (``cdc ingest`` claims its stream
        sequences in the transaction of the records); SinkError when it fails."""
        assert self._conn is not None
        try:
            cur = self._conn.execute(query, params)
            return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            self._head = self._head_at = None
            with contextlib.suppress(psycopg.Error):
                self._conn.rollback()
            raise sink_failure(Flush([], None), exc) from None

    def commit(self) -> None:
        """Commit what :meth:`write` (chunks, no checkpoint) and :meth:`execute` did; the
        chain's head moves with them."""
        assert self._conn is not None
        try:
            self._move_head(self._conn)
            self._conn.commit()
        except psycopg.Error as exc:
            with contextlib.suppress(psycopg.Error):
                self._conn.rollback()
            raise sink_failure(Flush([], None), exc) from None
        finally:
            self._head = self._head_at = None

    def _move_head(self, conn: psycopg.Connection[Any]) -> None:
        """The head to the last record chained in this transaction, if any (it is locked)."""
        if self._head_at is not None:
            conn.execute(self._sql.move_head_sql, self._head_parameters())

    def _head_parameters(self) -> dict[str, Any]:
        assert self._head is not None and self._head_at is not None
        commit_lsn, seq = self._head_at
        return {
            "head_hash": self._head.hash,
            "head_position": self._head.position,
            "head_commit_lsn": commit_lsn,
            "head_seq": seq,
        }

    def _end_flush(
        self,
        conn: psycopg.Connection[Any],
        counts: dict[str, str],
        checkpoint: Checkpoint | None,
    ) -> None:
        """One statement after the COPY (sql/store/flush_end.sql): the flush's rollup counts;
        with a checkpoint, also the head moved (if records were chained in this transaction)
        and the checkpoint stored, ready to commit."""
        if checkpoint is None:  # a chunk: the head moves, and the checkpoint is stored, later
            conn.execute(self._sql.end[False, False], counts)
            return
        moves = self._head_at is not None
        conn.execute(
            self._sql.end[True, moves],
            {
                **counts,
                **(self._head_parameters() if moves else {}),
                "slot": self.slot,
                "commit_lsn": format_lsn(checkpoint.commit_lsn),
                "end_lsn": format_lsn(checkpoint.end_lsn),
                "commit_time": checkpoint.commit_time,
            },
        )

    def read_checkpoint(self) -> StoredCheckpoint | None:
        assert self._conn is not None
        query = sql.SQL(
            "SELECT commit_lsn::text, end_lsn::text, commit_time FROM {}.checkpoints "
            "WHERE slot_name = %s"
        ).format(sql.Identifier(self.schema))
        try:
            row = self._conn.execute(query, (self.slot,)).fetchone()
            self._conn.commit()
        except psycopg.errors.UndefinedTable:
            raise SinkError(
                f"the activity store {self.schema}.checkpoints does not exist in "
                f'{describe_target(self._dsn)}; run "cdc setup"'
            ) from None
        except psycopg.Error as exc:
            raise connection_lost(exc) or SinkError(f"cannot read the checkpoint: {exc}") from None
        if row is None:
            return None
        return StoredCheckpoint(Lsn.parse(row[0]), Lsn.parse(row[1]), row[2])

    def read_modes(self) -> dict[tuple[str, str], str]:
        """Each table's capture mode as the cutover markers recorded so far left it."""
        assert self._conn is not None
        query = sql.SQL("SELECT schema_name, table_name, mode FROM {}.capture_modes").format(
            sql.Identifier(self.schema)
        )
        try:
            rows = self._conn.execute(query).fetchall()
            self._conn.commit()
        except psycopg.errors.UndefinedTable:
            self._conn.rollback()
            raise SinkError(
                f'the activity store {self.schema} is not current; run "cdc setup"'
            ) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            self._conn.rollback()
            raise SinkError(
                f"{exc.diag.message_primary}; grant the daemon's role what "
                '"cdc setup --print-role-sql" lists'
            ) from None
        except psycopg.Error as exc:
            raise connection_lost(exc) or SinkError(
                f"cannot read the capture modes: {exc}"
            ) from None
        return {(schema, table): mode for schema, table, mode in rows}

    def _record_modes(self, conn: psycopg.Connection[Any], records: list[ActivityRecord]) -> None:
        # A cutover marker's record moves its table's mode, in the same transaction.
        for record in records:
            if record.source != "migration":
                continue
            mode = _MODE_OF_ACTION.get(record.action)
            if mode is None:
                continue
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.capture_modes AS m (schema_name, table_name, mode, "
                    "since_commit_lsn) VALUES (%s, %s, %s, %s) ON CONFLICT (schema_name, "
                    "table_name) DO UPDATE SET mode = EXCLUDED.mode, since_commit_lsn = "
                    "EXCLUDED.since_commit_lsn, changed_at = now()"
                ).format(sql.Identifier(self.schema)),
                (record.schema_name, record.table_name, mode, record.commit_lsn),
            )

    def prepare(self, flush: Flush) -> PreparedFlush:
        """The CPU work of a write, done ahead without I/O: the COPY data, chained from where
        the previously prepared flush left the head, and the rollup counts. Flushes must be
        prepared in the order they are written; the write checks the head it locks against
        the one predicted here and encodes again if another writer moved it meanwhile."""
        records = flush.records
        if not records:
            return PreparedFlush(flush, None, None, None, None)
        rollups = upsert_parameters(records)
        if self.dead_letter:
            return PreparedFlush(flush, None, None, None, rollups)  # refusals re-encode anyway
        if not self.hash_chain:
            data, binary = self._format.plain_rows(records)
            return PreparedFlush(flush, data, None, None, rollups, binary=binary)
        head = self._predicted
        if head is not None:
            found = self._format.binary_rows(records, head)
            if found is not None:
                self._predicted = found[1]
                return PreparedFlush(flush, found[0], head, found[1], rollups, binary=True)
        if head is None or any(iso_utc_text(at) is None for at in {r.occurred_at for r in records}):
            self._predicted = None  # the write encodes this one, and the next ones
            return PreparedFlush(flush, None, None, None, rollups)
        data, moved = encode_chained_rows(records, head, datetime.now(UTC))
        self._predicted = moved
        return PreparedFlush(flush, data, head, moved, rollups)

    def write(self, item: Flush | PreparedFlush) -> int:
        """COPY the records; with a checkpoint, store it and commit. Raises SinkError.

        Returns how many records were parked in the dead letters (``[sink] on_refused =
        "dead_letter"``): 0 unless the sink refused a change."""
        conn = self._conn
        assert conn is not None
        prepared = item if isinstance(item, PreparedFlush) else None
        flush = item.flush if isinstance(item, PreparedFlush) else item
        parked = 0
        try:
            records = flush.records
            if records and self.dead_letter:
                records, parked = self._write_parking_refused(conn, flush)
            elif records:
                self._write_records(conn, records, prepared)
            if records:
                self._record_modes(conn, records)
            if records or flush.checkpoint is not None:
                # the dashboard counts, in this transaction: they commit with the records
                counts = prepared.rollups if prepared is not None and not parked else None
                self._end_flush(conn, counts or upsert_parameters(records), flush.checkpoint)
            if flush.checkpoint is not None:
                conn.commit()
                self._head = self._head_at = None
                failpoints.hit("sink.after_commit")
        except psycopg.Error as exc:
            self._head = self._head_at = None
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            raise self._format.failure(conn, flush, exc) from None
        except SinkError:
            self._head = self._head_at = None
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            raise
        return parked

    def _write_records(
        self,
        conn: psycopg.Connection[Any],
        records: list[ActivityRecord],
        prepared: PreparedFlush | None = None,
    ) -> None:
        if not self.hash_chain:
            if prepared is not None and prepared.copy_data is not None:
                self._format.send(conn, prepared.copy_data, prepared.binary)
            else:
                self._format.send(conn, *self._format.plain_rows(records))
            return
        head = self._head
        if head is None:
            # First records of this sink transaction: lock the head; it stays locked (and
            # ours to move) until the commit.
            row = self._sql.lock_head_row(conn)
            if row is None:
                raise SinkError(
                    f"{self.schema}.{self.table}_chain_head has no row: the hash chain "
                    'cannot go on; run "cdc verify-chain" and restore it'
                )
            head = ChainHead(bytes(row[0]), int(row[1]))
        if (
            prepared is not None
            and prepared.copy_data is not None
            and prepared.head == head
            and prepared.moved is not None
        ):
            data, moved, binary = prepared.copy_data, prepared.moved, prepared.binary
        else:  # not prepared, or chained from a head that is not the one locked: encode here
            found = self._format.binary_rows(records, head)
            if found is not None and found[1] is not None:
                data, moved, binary = found[0], found[1], True
            else:
                data, moved = encode_chained_rows(
                    records, head, datetime.now(UTC), self._server_times(conn, records)
                )
                binary = False
        self._format.send(conn, data, binary)
        # only now: a COPY refused (and rolled back to a savepoint) leaves the head as it was
        self._head = moved
        self._head_at = (records[-1].commit_lsn, records[-1].seq)

    def _server_times(
        self, conn: psycopg.Connection[Any], records: list[ActivityRecord]
    ) -> dict[str, str] | None:
        """The canonical text of the occurred_at values only the server can read (none, as
        the daemon writes them; an application event's own ``emitted_at`` may be one)."""
        unread = {r.occurred_at for r in records if iso_utc_text(r.occurred_at) is None}
        if not unread:
            return None
        conn.execute("SAVEPOINT activity_cdc_times")
        try:
            rows = conn.execute(self._sql.server_times_sql, (sorted(unread),)).fetchall()
        except psycopg.errors.DataException:
            # Not a time at all: COPY refuses that record by its line (what it is hashed
            # with does not matter, it is never stored).
            conn.execute("ROLLBACK TO SAVEPOINT activity_cdc_times")
            return None
        conn.execute("RELEASE SAVEPOINT activity_cdc_times")
        return {str(text): str(utc) for text, utc in rows}

    def _write_parking_refused(
        self, conn: psycopg.Connection[Any], flush: Flush
    ) -> tuple[list[ActivityRecord], int]:
        """Write the records; a change the sink refuses (a value or a constraint of its row) is
        parked in ``dead_letters`` with the error, loudly, and the rest is written. Under a
        savepoint, so the earlier chunks of a large source transaction, already written in
        this sink transaction, stay. Anything else (and a refusal that names no row) raises."""
        records = list(flush.records)
        parked = 0
        while records:
            conn.execute("SAVEPOINT activity_cdc_flush")
            try:
                self._write_records(conn, records)
            except psycopg.Error as exc:
                conn.execute("ROLLBACK TO SAVEPOINT activity_cdc_flush")
                if not is_row_error(exc) or parked >= MAX_PARKED_PER_FLUSH:
                    raise
                if self._format.types_changed(conn):  # migration 0022 under the sink: resend
                    continue
                index = refused_line(exc)
                if index is None or index > len(records):
                    raise exc from None
                bad = records.pop(index - 1)
                park_refused(conn, self._sql.park_sql, self.slot, self.schema, bad, exc)
                parked += 1
                continue
            conn.execute("RELEASE SAVEPOINT activity_cdc_flush")
            break
        return records, parked


_MODE_OF_ACTION = {"migration.cutover": "cdc", "migration.rollback": "shadow"}
