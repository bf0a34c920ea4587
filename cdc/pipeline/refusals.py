"""What the sink refused: the COPY line a refusal names, whether it is one row's (a value or a
constraint) or the connection's, and the one-line error that names the change."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import psycopg
from psycopg import sql

from cdc.connect import server_message
from cdc.errors import CdcError, ConnectError, SinkError
from cdc.pipeline.activity import ActivityRecord
from cdc.pipeline.batching import Flush

log = logging.getLogger("cdc.sink")  # the sink's log lines keep the sink's name

MAX_PARKED_PER_FLUSH = 100  # more refusals than this in one batch is not bad rows: stop


def refused_line(exc: psycopg.Error) -> int | None:
    """The 1-based COPY line of the refused row, from the error's context (binary COPY
    numbers its tuples as lines too: ``COPY records, line 3, column new``)."""
    line = COPY_LINE.search(exc.diag.context or "")
    return int(line.group(1)) if line else None


def is_row_error(exc: psycopg.Error) -> bool:
    """A value or a constraint of one row (SQLSTATE classes 22 and 23), not the connection."""
    return exc.sqlstate is not None and exc.sqlstate[:2] in ("22", "23")


COPY_LINE = re.compile(r"\bCOPY \S+, line (\d+)")


def connection_lost(exc: psycopg.Error) -> ConnectError | None:
    """The sink's connection gone (closed, or its session terminated), as the error a caller
    reconnects after; None when ``exc`` is anything else."""
    if isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None
        or exc.sqlstate.startswith("08")
        or exc.sqlstate in ("57P01", "57P02", "57P03")
    ):
        return ConnectError(
            f"sink connection lost: {server_message(exc)}; nothing was acknowledged"
        )
    return None


def sink_failure(flush: Flush, exc: psycopg.Error) -> CdcError:
    """One line naming the change the sink refused (COPY's error context gives its line), or
    the batch when the failure is not a row's."""
    lost = connection_lost(exc)
    if lost is not None:
        return lost
    message = server_message(exc)
    where = ""
    line = refused_line(exc)
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


def park_refused(
    conn: psycopg.Connection[Any],
    park_sql: sql.Composed,
    slot: str,
    schema: str,
    record: ActivityRecord,
    exc: psycopg.Error,
) -> None:
    """Park a record the sink refused in ``<schema>.dead_letters`` with the error, loudly
    (``[sink] on_refused = "dead_letter"``), in the caller's transaction."""
    message = server_message(exc)
    conn.execute(
        park_sql,
        {
            "slot": slot,
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
        schema,
    )
