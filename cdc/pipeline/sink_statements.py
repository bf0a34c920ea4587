"""The statements the sink runs around each COPY (cdc.pipeline.sink): the chain head's lock
and move, a flush's end (sql/store/flush_end.sql) and the server's reading of times.

Composed once per store (schema, records table) and rendered to bytes once per connection
(:meth:`SinkStatements.render`): a ``Composed`` is rendered again at every execute, its
identifiers quoted through libpq (py-spy on a live daemon: ~11% of the sink thread's CPU).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors, pq, sql
from psycopg.adapt import Transformer
from psycopg.generators import execute

from cdc.sqlfiles import sql_template, sql_text

# A flush's end statement, keyed by (stores the checkpoint, moves the head).
EndKey = tuple[bool, bool]


class SinkStatements:
    """The sink's statements for the records table ``schema.table``."""

    def __init__(self, schema: str, table: str) -> None:
        head_table = sql.Identifier(f"{table}_chain_head")
        self.lock_head_sql = sql.SQL(
            "SELECT hash, position FROM {}.{} WHERE one FOR UPDATE"
        ).format(sql.Identifier(schema), head_table)
        self.move_head_sql = sql.SQL(
            "UPDATE {}.{} SET hash = %(head_hash)s, position = %(head_position)s, "
            "commit_lsn = %(head_commit_lsn)s, seq = %(head_seq)s, updated_at = now() WHERE one"
        ).format(sql.Identifier(schema), head_table)
        # After a flush's COPY, one statement: its rollup counts; with a checkpoint, the head
        # moved (when records were chained in the transaction) and the checkpoint stored.
        checkpoint_sql = sql_template(
            "checkpoint_upsert.sql", schema=schema, checkpoints="checkpoints"
        )
        self.end_sql: dict[EndKey, sql.Composed] = {
            (stores, moves): sql.SQL(sql_text("store/flush_end.sql")).format(
                schema=sql.Identifier(schema),
                move_head=sql.SQL(", head AS ({})").format(self.move_head_sql)
                if moves
                else sql.SQL(""),
                store_checkpoint=sql.SQL(", checkpoint AS ({})").format(checkpoint_sql)
                if stores
                else sql.SQL(""),
            )
            for stores, moves in ((False, False), (True, False), (True, True))
        }
        self.server_times_sql = sql.SQL(
            "SELECT t, to_char(t::timestamptz AT TIME ZONE 'UTC', {}) FROM unnest(%s::text[]) t"
        ).format(sql.Literal('YYYY-MM-DD"T"HH24:MI:SS.US'))
        self.park_sql = sql_template("dead_letter_insert.sql", schema=schema)
        # The statements of every flush as render made them for the open connection; the
        # Composed ones until then.
        self.lock_head: bytes | sql.Composed = self.lock_head_sql
        self.begin_lock_head = b""
        self.end: dict[EndKey, bytes | sql.Composed] = dict(self.end_sql)

    def render(self, conn: psycopg.Connection[Any]) -> None:
        """The statements of every flush as bytes for ``conn``."""
        self.lock_head = self.lock_head_sql.as_bytes(conn)
        self.begin_lock_head = b"BEGIN; " + self.lock_head
        self.end = {key: statement.as_bytes(conn) for key, statement in self.end_sql.items()}

    def lock_head_row(self, conn: psycopg.Connection[Any]) -> tuple[Any, ...] | None:
        """The chain head's row (hash, position), locked until the sink transaction ends.

        The first statement of a sink transaction: psycopg would send its ``BEGIN`` alone
        first, a round trip of its own. The two go as one simple query instead (one round
        trip, one wake-up of the backend), the row read by psycopg's loaders; the
        transaction is then open as psycopg's own would be (it reads the connection's
        status), and psycopg commits or rolls it back."""
        if (
            conn.autocommit
            or conn.pgconn.transaction_status != pq.TransactionStatus.IDLE
            or not self.begin_lock_head
        ):
            return conn.execute(self.lock_head).fetchone()
        with conn.lock:
            rows = simple_query(conn, self.begin_lock_head)[-1]
        if rows.status != pq.ExecStatus.TUPLES_OK:
            raise psycopg.InterfaceError(
                f"the chain head's lock returned {pq.ExecStatus(rows.status).name}"
            )
        if not rows.ntuples:
            return None
        loader = Transformer(conn)
        loader.set_pgresult(rows)
        return loader.load_row(0, tuple)


def simple_query(conn: psycopg.Connection[Any], query: bytes) -> list[pq.abc.PGresult]:
    """Send ``query`` through libpq as one simple query (its statements in one round trip) and
    wait for its results, up to a COPY's start; a failed statement raises psycopg's own error
    for it (its SQLSTATE, its diagnostics). The caller holds ``conn.lock``."""
    pgconn = conn.pgconn
    pgconn.send_query(query)
    results: list[pq.abc.PGresult] = conn.wait(execute(pgconn))
    for result in results:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise errors.error_from_result(result, encoding=conn.info.encoding)
    return results
