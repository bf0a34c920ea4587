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

With ``[sink] hash_chain`` (the default) a batch is COPYed into a temporary staging table and
moved by one INSERT ... SELECT that chains each record's hash to the one before
(``sql/chain_insert.sql``; docs/tamper-evidence.md). A change the sink refuses stops the
daemon naming it, or with ``[sink] on_refused = "dead_letter"`` is parked in
``dead_letters`` (docs/operations.md).

:class:`SinkWriter` runs the sink in one background thread so that decoding the next changes
overlaps with the server writing the previous batch (psycopg releases the GIL during I/O).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from cdc import failpoints
from cdc.connect import server_message
from cdc.dsn import connect_failure, describe_target, require_parsable
from cdc.errors import CdcError, ConnectError, SinkError
from cdc.lsn import Lsn, format_lsn
from cdc.metrics import Metrics, tally
from cdc.pipeline.activity import RECORD_COLUMNS, ActivityRecord
from cdc.pipeline.batching import Flush
from cdc.pipeline.rollups import Rollups
from cdc.pipeline.sinks import RecordSink, StoredCheckpoint
from cdc.sqlfiles import sql_template

log = logging.getLogger("cdc.sink")  # log lines keep the name they had

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    # Fast path: most values hold none of the four characters COPY text format escapes.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def encode_copy_rows(records: list[ActivityRecord]) -> str:
    """The records in COPY text format, one line each."""
    lines = []
    for r in records:
        lines.append(
            "\t".join(
                (
                    r.occurred_at,
                    r.source,
                    r.operation,
                    _copy_text(r.action),
                    _copy_text(r.category),
                    r.severity,
                    "\\N" if r.schema_name is None else _copy_text(r.schema_name),
                    "\\N" if r.table_name is None else _copy_text(r.table_name),
                    "\\N" if r.entity_type is None else _copy_text(r.entity_type),
                    "\\N" if r.entity_id is None else _copy_text(r.entity_id),
                    "\\N" if r.actor_id is None else _copy_text(r.actor_id),
                    "\\N" if r.context is None else _copy_text(r.context),
                    "\\N" if r.old is None else _copy_text(r.old),
                    "\\N" if r.new is None else _copy_text(r.new),
                    "\\N" if r.changes is None else _copy_text(r.changes),
                    "\\N" if r.summary is None else _copy_text(r.summary),
                    "\\N" if r.xid is None else str(r.xid),
                    r.commit_lsn,
                    str(r.seq),
                )
            )
        )
    lines.append("")
    return "\n".join(lines)


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
    ) -> None:
        self._dsn = dsn
        self.schema = schema
        self.table = table
        self.slot = slot
        self.hash_chain = hash_chain
        self.dead_letter = dead_letter
        self._park_sql = sql_template("dead_letter_insert.sql", schema=schema)
        self._conn: psycopg.Connection[Any] | None = None
        columns = sql.SQL(", ").join(map(sql.Identifier, RECORD_COLUMNS))
        self._copy_sql = sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
            sql.Identifier(schema), sql.Identifier(table), columns
        )
        # Hash chain on: COPY into a temporary staging table, then one INSERT ... SELECT chains
        # the batch and moves it (sql/chain_insert.sql, migrations/0011_hash_chain.sql).
        chain_names = {
            "schema": schema,
            "records": table,
            "records_chain_head": f"{table}_chain_head",
            "staging": _STAGING,
        }
        self._staging_ddl = sql_template("sink_staging.sql", staging=_STAGING)
        self._copy_staging_sql = sql.SQL("COPY pg_temp.{} ({}) FROM STDIN").format(
            sql.Identifier(_STAGING), columns
        )
        self._chain_insert_sql = sql_template("chain_insert.sql", **chain_names)
        self._clear_staging_sql = sql.SQL("TRUNCATE pg_temp.{}").format(sql.Identifier(_STAGING))
        self._checkpoint_sql = sql_template(
            "checkpoint_upsert.sql", schema=schema, checkpoints="checkpoints"
        )
        self._rollups = Rollups(schema)

    def open(self) -> None:
        require_parsable(self._dsn, "sink")
        try:
            self._conn = psycopg.connect(
                self._dsn, application_name="activity-cdc sink", connect_timeout=10
            )
            self._conn.execute("SET synchronous_commit = on")
            # A daemon that vanished mid-batch must not hold the rows (and their locks) of the
            # records the next daemon writes again.
            self._conn.execute("SET idle_in_transaction_session_timeout = '10min'")
            self._conn.commit()
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
        query = sql.SQL("SELECT hash FROM {}.{} WHERE one").format(
            sql.Identifier(self.schema), sql.Identifier(f"{self.table}_chain_head")
        )
        try:
            conn.execute(self._staging_ddl)
            head = conn.execute(query).fetchone()
            conn.commit()
        except psycopg.errors.UndefinedTable:
            conn.rollback()
            raise SinkError(
                f"the activity store {self.schema} has no hash chain yet "
                f'({self.schema}.{self.table}_chain_head is missing); run "cdc setup"'
            ) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            conn.rollback()
            raise SinkError(
                f"{exc.diag.message_primary}; the hash chain needs TEMPORARY on the sink database "
                f"and SELECT, UPDATE on {self.schema}.{self.table}_chain_head: grant what "
                '"cdc setup --print-role-sql" lists'
            ) from None
        except psycopg.Error as exc:
            conn.rollback()
            raise SinkError(f"cannot prepare the hash chain: {exc}") from None
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
            with contextlib.suppress(psycopg.Error):
                self._conn.rollback()
            raise _sink_failure(Flush([], None), exc) from None

    def commit(self) -> None:
        """Commit what :meth:`write` (chunks, no checkpoint) and :meth:`execute` did."""
        assert self._conn is not None
        try:
            self._conn.commit()
        except psycopg.Error as exc:
            raise _sink_failure(Flush([], None), exc) from None

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
            raise SinkError(f"cannot read the checkpoint: {exc}") from None
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
        self._conn.commit()
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

    def write(self, flush: Flush) -> int:
        """COPY the records; with a checkpoint, store it and commit. Raises SinkError.

        Returns how many records were parked in the dead letters (``[sink] on_refused =
        "dead_letter"``): 0 unless the sink refused a change."""
        conn = self._conn
        assert conn is not None
        parked = 0
        try:
            records = flush.records
            if records and self.dead_letter:
                records, parked = self._write_parking_refused(conn, flush)
            elif records:
                self._write_records(conn, records)
            if records:
                # the dashboard counts, in this transaction: they commit with the records
                self._rollups.apply(conn, records)
                self._record_modes(conn, records)
            if flush.checkpoint is not None:
                checkpoint = flush.checkpoint
                conn.execute(
                    self._checkpoint_sql,
                    {
                        "slot": self.slot,
                        "commit_lsn": format_lsn(checkpoint.commit_lsn),
                        "end_lsn": format_lsn(checkpoint.end_lsn),
                        "commit_time": checkpoint.commit_time,
                    },
                )
                conn.commit()
                failpoints.hit("sink.after_commit")
        except psycopg.Error as exc:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            if self.hash_chain and _is_row_error(exc):
                # The chained INSERT ... SELECT names no line; COPY straight into the records
                # (rolled back, whatever happens) finds the change the table refuses.
                exc = self._locate_refusal(flush.records) or exc
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
            raise _sink_failure(flush, exc) from None
        except SinkError:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            raise
        return parked

    def _write_records(self, conn: psycopg.Connection[Any], records: list[ActivityRecord]) -> None:
        if not self.hash_chain:
            with conn.cursor() as cur, cur.copy(self._copy_sql) as copy:
                copy.write(encode_copy_rows(records))
            return
        with conn.cursor() as cur:
            with cur.copy(self._copy_staging_sql) as copy:
                copy.write(encode_copy_rows(records))
            cur.execute(self._chain_insert_sql)
            if cur.rowcount != 1:
                raise SinkError(
                    f"{self.schema}.{self.table}_chain_head has no row: the hash chain "
                    'cannot go on; run "cdc verify-chain" and restore it'
                )
            cur.execute(self._clear_staging_sql)

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
                if not _is_row_error(exc) or parked >= MAX_PARKED_PER_FLUSH:
                    raise
                located = self._locate_refusal(records, savepoint=True) if self.hash_chain else exc
                index = _refused_line(located) if located is not None else None
                if index is None or index > len(records):
                    raise exc from None
                bad = records.pop(index - 1)
                self._park(conn, bad, located or exc)
                parked += 1
                continue
            conn.execute("RELEASE SAVEPOINT activity_cdc_flush")
            break
        return records, parked

    def _park(
        self, conn: psycopg.Connection[Any], record: ActivityRecord, exc: psycopg.Error
    ) -> None:
        message = server_message(exc)
        conn.execute(
            self._park_sql,
            {
                "slot": self.slot,
                "commit_lsn": record.commit_lsn,
                "seq": record.seq,
                "schema_name": record.schema_name,
                "table_name": record.table_name,
                "entity_id": record.entity_id,
                "operation": record.operation,
                "error": message,
                "sqlstate": exc.sqlstate,
                "record": json.dumps(record._asdict(), ensure_ascii=False),
            },
        )
        log.error(
            "the sink refused the change to %s.%s key %s (%s, commit %s, seq %s): %s [SQLSTATE %s];"
            ' parked in %s.dead_letters ([sink] on_refused = "dead_letter"): it is NOT in '
            "the activity records until you fix it and insert it from there",
            record.schema_name,
            record.table_name,
            record.entity_id,
            record.operation,
            record.commit_lsn,
            record.seq,
            message,
            exc.sqlstate,
            self.schema,
        )

    def _locate_refusal(
        self, records: list[ActivityRecord], *, savepoint: bool = False
    ) -> psycopg.Error | None:
        """COPY straight into the records table, always undone: its error names the line."""
        conn = self._conn
        assert conn is not None
        if savepoint:
            conn.execute("SAVEPOINT activity_cdc_locate")
        try:
            with conn.cursor() as cur, cur.copy(self._copy_sql) as copy:
                copy.write(encode_copy_rows(records))
        except psycopg.Error as exc:
            return exc
        finally:
            if savepoint:
                conn.execute("ROLLBACK TO SAVEPOINT activity_cdc_locate")
        return None


MAX_PARKED_PER_FLUSH = 100  # more refusals than this in one batch is not bad rows: stop


def _refused_line(exc: psycopg.Error) -> int | None:
    """The 1-based COPY line of the refused row, from the error's context."""
    line = _COPY_LINE.search(exc.diag.context or "")
    return int(line.group(1)) if line else None


_STAGING = "activity_cdc_staging"


def _is_row_error(exc: psycopg.Error) -> bool:
    """A value or a constraint of one row (SQLSTATE classes 22 and 23), not the connection."""
    return exc.sqlstate is not None and exc.sqlstate[:2] in ("22", "23")


_MODE_OF_ACTION = {"migration.cutover": "cdc", "migration.rollback": "shadow"}


_COPY_LINE = re.compile(r"\bCOPY \S+, line (\d+)")


def _sink_failure(flush: Flush, exc: psycopg.Error) -> CdcError:
    """One line naming the change the sink refused (COPY's error context gives its line), or
    the batch when the failure is not a row's."""
    message = server_message(exc)
    if isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None
        or exc.sqlstate.startswith("08")
        or exc.sqlstate in ("57P01", "57P02", "57P03")
    ):
        return ConnectError(f"sink connection lost: {message}; nothing was acknowledged")
    where = ""
    line = _refused_line(exc)
    if line is not None and 0 < line <= len(flush.records):
        bad = flush.records[line - 1]
        where = (
            f" at the change to {bad.schema_name}.{bad.table_name} key {bad.entity_id} "
            f"({bad.operation}, commit {bad.commit_lsn}, seq {bad.seq})"
        )
    elif flush.records:
        first, last = flush.records[0], flush.records[-1]
        where = f" (commits {first.commit_lsn} through {last.commit_lsn})"
    sqlstate = f" [SQLSTATE {exc.sqlstate}]" if exc.sqlstate else ""
    return SinkError(
        f"the sink refused a batch of {len(flush.records)} records{where}: {message}{sqlstate}; "
        "nothing of it was written or acknowledged: fix the cause and restart (the changes are "
        "still in the slot)"
    )


class SinkWriter:
    """Runs a :class:`~cdc.pipeline.sinks.RecordSink` in a background thread.

    The daemon submits flushes in order; for each flush with a checkpoint the writer reports
    the checkpoint's ``end_lsn`` once it is durable, through :meth:`completed`, and writes a
    byte to ``wake_fd`` so the daemon's ``select`` wakes up. The queue is bounded: when the
    sink is slower than the stream, ``submit`` blocks, which is the back-pressure.
    """

    def __init__(
        self, sink: RecordSink, *, max_queued: int = 2, metrics: Metrics | None = None
    ) -> None:
        self._sink = sink
        self._metrics = metrics
        self._queue: queue.Queue[Flush | None] = queue.Queue(maxsize=max_queued)
        self._done: queue.Queue[int | CdcError] = queue.Queue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._run, name="activity-cdc-sink", daemon=True)
        self._failed = threading.Event()

    @property
    def wake_fd(self) -> int:
        return self._wake_r

    def start(self) -> None:
        self._thread.start()

    def submit(self, flush: Flush, on_wait: Callable[[], None] | None = None) -> None:
        """Queue a flush; while the sink is behind this blocks (back-pressure), calling
        ``on_wait`` every half second so the caller can keep its replication link alive."""
        while True:
            if self._failed.is_set():
                return  # the error is waiting in completed()
            try:
                self._queue.put(flush, timeout=0.5)
                return
            except queue.Full:
                if on_wait is not None:
                    on_wait()

    def completed(self) -> list[int]:
        """End LSNs made durable since the last call; raises the writer's error if it failed."""
        if self._done.empty():
            # The common case on every loop turn: nothing to report, no syscall, no exception.
            # (The writer queues before it writes the wake-up byte, so a byte left unread here
            # only wakes the loop once more.)
            return []
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        done: list[int] = []
        while True:
            try:
                item = self._done.get_nowait()
            except queue.Empty:
                return done
            if isinstance(item, CdcError):
                raise item
            done.append(item)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish what was submitted, then end the thread."""
        if self._thread.is_alive():
            while not self._failed.is_set():
                try:
                    self._queue.put(None, timeout=0.5)
                    break
                except queue.Full:
                    continue
            self._thread.join(timeout_s)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        while True:
            flush = self._queue.get()
            if flush is None:
                return
            started = time.monotonic()
            try:
                parked = self._sink.write(flush)
            except CdcError as exc:
                self._done.put(exc)
                self._failed.set()
                os.write(self._wake_w, b"!")
                return
            except Exception as exc:  # a bug must still stop the daemon, not hang it
                self._done.put(SinkError(f"unexpected sink failure: {exc!r}"))
                self._failed.set()
                os.write(self._wake_w, b"!")
                return
            if self._metrics is not None and parked:
                for _ in range(parked):
                    self._metrics.error("dead_letter")
            if self._metrics is not None:  # here, so the read loop never pays for it
                self._metrics.batch_written(
                    rows=len(flush.records),
                    seconds=time.monotonic() - started,
                    by_table_op=tally(flush.records),
                )
            if flush.checkpoint is not None:
                self._done.put(flush.checkpoint.end_lsn)
                os.write(self._wake_w, b".")
