"""Reading the activity store: pages of records, one row's history, and following new records.

:func:`open_store` connects to the sink database; the :class:`Store` it yields runs the
queries of :mod:`cdc.store.queries` and returns :class:`~cdc.store.model.StoredRecord` s.
Driver errors become :class:`~cdc.errors.SinkError` (or ``ConnectError``) here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import args_row

from cdc.config import Settings
from cdc.connect import connect, server_message
from cdc.dsn import describe_target
from cdc.errors import ConnectError, SinkError
from cdc.lsn import Lsn
from cdc.store import queries
from cdc.store.indexes import values_search_indexes
from cdc.store.model import RecordCursor, RecordFilter, StoredRecord, split_table
from cdc.store.search_windows import Window, first_span, next_span, relaxed_tsquery

# What reading a store that "cdc setup" has not (fully) made raises.
_STORE_MISSING = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.InvalidSchemaName,
)

# A record as the web API gives it: one JSON text (queries.api_columns).
_API_JSON = queries.api_columns()[0][1]

# How many rows one query of an export or a follow poll fetches.
FETCH_ROWS = 1000
# The size of the pieces an export is handed on in.
EXPORT_PIECE_BYTES = 256 * 1024
# How many searches' relaxed tsqueries a store (or the web server) keeps.
RELAXED_KEPT = 1024


class Store:
    """The records table of the settings, read through one connection (autocommit)."""

    def __init__(self, conn: psycopg.Connection[Any], settings: Settings) -> None:
        self.conn = conn
        self.settings = settings
        self.schema = settings.sink.schema_name
        self.table = sql.Identifier(settings.sink.schema_name, settings.sink.table_name)
        self._search_values: bool | None = None
        # search text -> its relaxed tsquery (search_windows.relaxed_tsquery), asked once
        self.relaxed_tsqueries: dict[str, str | None] = {}

    @property
    def search_values(self) -> bool:
        """Whether ``--search`` matches the row values too: when their GIN index exists
        (``[store] search_values`` and ``cdc setup``), else the summary, whose index every
        store has (migration 0012). Whichever is indexed, so a search never scans the table."""
        if self._search_values is None:
            with self.errors():
                found = values_search_indexes(
                    self.conn, self.settings.sink.schema_name, self.settings.sink.table_name
                )
            self._search_values = bool(found)
        return self._search_values

    # -- running queries ----------------------------------------------------------------------
    def fetch_records(self, query: sql.Composed | sql.SQL, params: list[Any]) -> list[StoredRecord]:
        with self.errors(), self.conn.cursor(row_factory=args_row(StoredRecord)) as cur:
            return cur.execute(query, params).fetchall()

    def fetch(
        self, query: sql.Composed | sql.SQL, params: Any = None, *, prepare: bool | None = None
    ) -> list[tuple[Any, ...]]:
        """The rows of a statement. ``prepare`` False: never as a prepared statement (psycopg
        prepares one run 5 times, and the server may then plan it once for any parameters)."""
        with self.errors():
            return self.conn.execute(query, params, prepare=prepare).fetchall()

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """psycopg errors → CdcError that say what to do."""
        try:
            yield
        except _STORE_MISSING as exc:
            raise SinkError(
                f"the activity store {self.settings.sink.table} is missing or older than this "
                f"version in {describe_target(self.settings.sink_dsn)} "
                f'({(exc.diag.message_primary or "").strip()}); run "cdc setup"'
            ) from None
        except psycopg.OperationalError as exc:
            if exc.sqlstate is None:
                raise ConnectError(f"connection to the sink database lost: {exc}") from None
            raise SinkError(f"cannot read {self.settings.sink.table}: {exc}") from None
        except psycopg.Error as exc:
            message = server_message(exc)
            raise SinkError(f"cannot read {self.settings.sink.table}: {message}") from None

    def now(self) -> datetime:
        """The database's clock: the one commit times come from."""
        row = self.fetch(sql.SQL("SELECT now()"))
        moment: datetime = row[0][0]
        return moment

    def _searches_values(self, f: RecordFilter) -> bool:
        """Whether the filter's full-text search goes over the values (:attr:`search_values`),
        for every query that pages records."""
        return f.search is not None and self.search_values

    # -- what the commands ask --------------------------------------------------------------
    def records(
        self, f: RecordFilter, *, before: RecordCursor | None = None, limit: int = 50
    ) -> list[StoredRecord]:
        """One page: up to ``limit`` records newest first, before the cursor if given."""
        rows = self._windowed(
            f, limit, lambda window: queries.page_query(
                self.table, self.schema, f, before=before, limit=limit,
                search_values=self._searches_values(f), window=window,
            ),
        )  # fmt: skip
        return [StoredRecord(*row) for row in rows]

    def _windowed(
        self,
        f: RecordFilter,
        limit: int,
        build: Callable[[Window | None], tuple[sql.Composed, list[Any]]],
        found: Callable[[list[tuple[Any, ...]]], int] = len,
    ) -> list[tuple[Any, ...]]:
        """The rows of the page statement ``build`` makes, probed in the windows of
        :mod:`cdc.store.search_windows` (:func:`first_span`, :func:`next_span`): the first
        whose page holds ``limit`` records (``found`` counts them), else the unbounded
        statement's. A full page in a window is
        the unbounded page of its snapshot, so the result is the unbounded query's."""
        span = first_span(f)
        relaxed = self._relaxed_tsquery(f.search) if f.search is not None and span else None
        while span is not None:
            rows = self.fetch(*build(Window(span, relaxed)), prepare=False)
            count = found(rows)
            if count >= limit:
                return rows
            span = next_span(f, span, count, limit)
        return self.fetch(*build(None))

    def _relaxed_tsquery(self, search: str) -> str | None:
        """:func:`relaxed_tsquery` of the search as the store parses it (kept per text)."""
        known = self.relaxed_tsqueries
        if search not in known:
            row = self.fetch(sql.SQL("SELECT websearch_to_tsquery('simple', %s)::text"), [search])
            if len(known) >= RELAXED_KEPT:
                known.clear()
            known[search] = relaxed_tsquery(row[0][0])
        return known[search]

    # -- the records as the web API gives them (JSON text rendered by PostgreSQL) -------------
    def first_page_json(self, f: RecordFilter, *, limit: int) -> tuple[list[tuple[str, str]], str]:
        """The newest ``limit`` records of the filter, newest first, each as ``(JSON text,
        cursor)`` (:func:`queries.api_columns`), and the position a live view goes on from
        (``commit_lsn,seq``: give it to :meth:`Follower.resume`), read in one statement: one
        snapshot, one round trip (the monitor's first page)."""
        rows = self._windowed(
            f, limit, lambda window: queries.first_page_query(
                self.table, self.schema, f, limit=limit, slack=Follower.SLACK,
                search_values=self._searches_values(f), columns=queries.api_columns(),
                window=window,
            ),
            found=lambda rows: sum(1 for row in rows if row[2] is not None),
        )  # fmt: skip
        # nothing written within the slack: a live view takes whatever comes next
        lsn, seq = (rows[0][0], rows[0][1]) if rows[0][0] is not None else ("0/0", 0)
        return [(row[2], row[3]) for row in rows if row[2] is not None], f"{lsn},{seq}"

    def records_json(
        self, f: RecordFilter, *, before: RecordCursor | None, limit: int
    ) -> list[tuple[str, str]]:
        """:meth:`records` as ``(JSON text, cursor)`` pairs."""
        rows = self._windowed(
            f, limit, lambda window: queries.page_query(
                self.table, self.schema, f, before=before, limit=limit,
                search_values=self._searches_values(f),
                columns=queries.columns_of(queries.api_columns()), window=window,
            ),
        )  # fmt: skip
        return [(row[0], row[1]) for row in rows]

    def record_json(self, commit_lsn: str, seq: int) -> str | None:
        """:meth:`record` as JSON text."""
        query, params = queries.record_query(
            self.table, commit_lsn=commit_lsn, seq=seq, columns=_API_JSON
        )
        found = self.fetch(query, params)
        return str(found[0][0]) if found else None

    def transaction_json(self, commit_lsn: str, *, limit: int) -> list[str]:
        """:meth:`transaction` as JSON texts."""
        query, params = queries.transaction_query(
            self.table, commit_lsn=commit_lsn, limit=limit, columns=_API_JSON
        )
        return [row[0] for row in self.fetch(query, params)]

    def history_json(
        self, table: str, entity_id: str, *, entity_type: str | None = None
    ) -> list[str]:
        """:meth:`history` as JSON texts."""
        query, params = self._history_query(table, entity_id, entity_type, _API_JSON)
        return [row[0] for row in self.fetch(query, params)]

    def iter_records(
        self, f: RecordFilter, *, before: RecordCursor | None = None, limit: int | None = None
    ) -> Iterator[StoredRecord]:
        """Records newest first, ``limit`` of them or all; fetched a page at a time, so an
        export of millions of rows holds one page in memory."""
        left = limit
        while left is None or left > 0:
            size = FETCH_ROWS if left is None else min(left, FETCH_ROWS)
            page = self.records(f, before=before, limit=size)
            yield from page
            if len(page) < size:
                return
            before = page[-1].cursor
            if left is not None:
                left -= len(page)

    def export(
        self,
        f: RecordFilter,
        *,
        fmt: str,
        limit: int | None = None,
        before: RecordCursor | None = None,
    ) -> Generator[bytes, None, int]:
        """Every record of the filter (before the cursor, the first ``limit``), newest first,
        as CSV with a header (``fmt`` "csv": times in ISO 8601 UTC, JSON columns as their
        text, NULL as an empty field) or JSON Lines ("jsonl"), in pieces as the server sends
        them: one COPY, constant memory at any size; returns how many records it wrote. Runs
        in its own transaction, without the statement timeout (an export of millions takes
        minutes); closing the iterator early cancels it."""
        query, params = queries.export_statement(
            self.table,
            self.schema,
            f,
            fmt=fmt,
            limit=limit,
            before=before,
            search_values=self._searches_values(f),
        )
        return self.copy(query, params)

    def copy(self, query: sql.Composed, params: list[Any]) -> Generator[bytes, None, int]:
        """Run a ``COPY ... TO STDOUT`` (:func:`queries.copy_statement`) in its own transaction
        (times in UTC, no statement timeout: an export of millions takes minutes), handing on
        what it sends in pieces; returns how many rows it wrote."""
        with self.errors(), self.conn.transaction():
            self.conn.execute("SET LOCAL statement_timeout = 0")
            self.conn.execute("SET LOCAL TimeZone = 'UTC'")
            self.conn.execute("SET LOCAL DateStyle = 'ISO'")
            with self.conn.cursor() as cur:
                with cur.copy(query, params) as copy:
                    # COPY sends a message per row: hand them on in pieces of
                    # EXPORT_PIECE_BYTES, or the caller pays its per-piece cost (a thread hop
                    # in the web server) per row
                    piece = bytearray()
                    for data in copy:
                        piece += data
                        if len(piece) >= EXPORT_PIECE_BYTES:
                            yield bytes(piece)
                            piece.clear()
                    if piece:
                        yield bytes(piece)
                return max(cur.rowcount, 0)

    def page_end(
        self, f: RecordFilter, *, before: RecordCursor | None, limit: int
    ) -> RecordCursor | None:
        """The cursor of the ``limit``-th record of the filter before ``before`` (None when
        there are fewer): where the page after an export of ``limit`` starts."""
        rows = self._windowed(
            f, limit, lambda window: queries.page_query(
                self.table, self.schema, f, before=before, limit=limit,
                search_values=self._searches_values(f),
                columns=sql.SQL("r.occurred_at, r.commit_lsn::text, r.seq"), window=window,
            ),
        )  # fmt: skip
        return RecordCursor(*rows[-1]) if len(rows) == limit else None

    def history(
        self, table: str, entity_id: str, *, entity_type: str | None = None
    ) -> list[StoredRecord]:
        """Every record of one row, oldest first. ``table`` is ``schema.table`` or a configured
        table's bare name; the entity type is the table's (from its rules) unless given."""
        return self.fetch_records(*self._history_query(table, entity_id, entity_type))

    def history_export(
        self, table: str, entity_id: str, *, entity_type: str | None = None, fmt: str = "jsonl"
    ) -> Generator[bytes, None, int]:
        """:meth:`history` as the export writes records (a bad ``table`` raises ValueError
        here, not when the pieces are read)."""
        query, params = self._history_query(
            table, entity_id, entity_type, queries.export_columns(fmt)
        )
        return self.copy(*queries.copy_statement(query, params, fmt=fmt))

    def _history_query(
        self,
        table: str,
        entity_id: str,
        entity_type: str | None,
        columns: sql.Composable | None = None,
    ) -> tuple[sql.Composed, list[Any]]:
        """The history statement of one row: ``table`` resolved against the configured
        tables (ValueError when unknown), the entity type the table's unless given."""
        schema_name, table_name, configured_type = resolve_table(self.settings, table)
        return queries.history_query(
            self.table,
            entity_type=entity_type or configured_type,
            entity_id=entity_id,
            schema_name=schema_name,
            table_name=table_name,
            columns=columns,
        )

    def record(self, commit_lsn: str, seq: int) -> StoredRecord | None:
        """The record at ``(commit_lsn, seq)``, or None."""
        query, params = queries.record_query(self.table, commit_lsn=commit_lsn, seq=seq)
        found = self.fetch_records(query, params)
        return found[0] if found else None

    def transaction(self, commit_lsn: str, *, limit: int = 1000) -> list[StoredRecord]:
        """The records of the source transaction that committed at ``commit_lsn``, in order
        (the first ``limit``: a bulk load may hold millions)."""
        query, params = queries.transaction_query(self.table, commit_lsn=commit_lsn, limit=limit)
        return self.fetch_records(query, params)

    def follow(self, f: RecordFilter) -> Follower:
        return Follower(self, f)


@contextlib.contextmanager
def open_store(settings: Settings) -> Iterator[Store]:
    with connect(settings.sink_dsn, role="sink") as conn:
        yield Store(conn, settings)


def resolve_table(settings: Settings, text: str) -> tuple[str, str, str]:
    """(schema, table, entity type) of a table named on the command line. A bare name must be
    one configured table's. Raises ValueError with a message for the user."""
    schema, table = split_table(text)
    if schema is None:
        schemas = sorted(r.schema_name for r in settings.tables if r.table_name == table)
        if len(schemas) != 1:
            where = f"it is in {', '.join(schemas)}" if schemas else "it is not a configured table"
            raise ValueError(f"give the table {table!r} as schema.table ({where})")
        schema = schemas[0]
    rules = settings.rules_for(schema, table)
    # the same default as the mapping (cdc.pipeline.activity): the table's name
    return schema, table, rules.entity_type if rules and rules.entity_type else table


class Follower:
    """``cdc activity --follow``: the newest records of a filter, then at each :meth:`poll`
    the ones written since, in commit order, each exactly once.

    The position is the last written ``(commit_lsn, seq)`` of the whole table (not of the
    filter), so a poll reads only what was written since the previous one, through the
    primary key. Commit times follow commit order only roughly (they are taken just before
    the commit record is written; a clock can step back), so the time bound that prunes
    partitions stays ``SLACK`` behind the last record seen.
    """

    SLACK = timedelta(hours=1)

    def __init__(self, store: Store, f: RecordFilter) -> None:
        self._store = store
        self._filter = f
        self._position: tuple[str, int] = ("0/0", -1)
        self._floor: datetime | None = None

    def start(self, limit: int) -> list[StoredRecord]:
        """The newest ``limit`` records of the filter, oldest first; the position is set in
        the same snapshot, so nothing is shown twice or skipped between the two."""
        store = self._store
        with store.errors(), store.conn.transaction():
            store.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            self._floor = store.now() - self.SLACK
            self._advance_to(self._head())
            page = store.records(self._filter, limit=limit) if limit > 0 else []
        return page[::-1]

    def start_export(self, limit: int, *, fmt: str) -> Generator[bytes, None, int]:
        """:meth:`start` as the export writes records (``fmt`` "jsonl" or "csv", with its
        header): the newest ``limit``, oldest first."""
        store = self._store
        with store.errors(), store.conn.transaction():
            store.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            self._floor = store.now() - self.SLACK
            self._advance_to(self._head())
            query, params = queries.oldest_first_export(
                store.table,
                store.schema,
                self._filter,
                fmt=fmt,
                limit=limit,
                search_values=self._filter.search is not None and store.search_values,
            )
            return (yield from store.copy(query, params))

    def poll_export(self, *, fmt: str) -> Generator[bytes, None, int]:
        """:meth:`poll` as the export writes records (no CSV header)."""
        if self._floor is None:
            raise RuntimeError("Follower.start_export() first")
        head = self._head()
        if head is None or _lsn_key(head[:2]) <= _lsn_key(self._position):
            return 0
        query, params = queries.follow_query(
            self._store.table,
            self._store.schema,
            self._filter,
            floor=self._floor,
            after=self._position,
            through=(head[0], head[1]),
            limit=None,
            search_values=self._filter.search is not None and self._store.search_values,
            columns=queries.export_columns(fmt),
        )
        written = yield from self._store.copy(
            *queries.copy_statement(query, params, fmt=fmt, header=False)
        )
        self._advance_to(head)
        return written

    @property
    def position(self) -> tuple[str, int]:
        """The last ``(commit_lsn, seq)`` of the whole table this follower has passed: give it
        to :meth:`resume` to go on from there (a page and a live stream that neither skip nor
        repeat a record)."""
        return self._position

    def resume(self, position: tuple[str, int]) -> None:
        """Follow from ``position`` (a :attr:`position` of an earlier follower) instead of
        from the newest records: the next :meth:`poll` returns what was written after it."""
        store = self._store
        self._floor = store.now() - self.SLACK
        self._position = (position[0].upper(), position[1])

    def poll(self) -> list[StoredRecord]:
        """Records of the filter written since the last call, oldest first."""
        if self._floor is None:
            raise RuntimeError("Follower.start() first")
        head = self._head()
        if head is None or _lsn_key(head[:2]) <= _lsn_key(self._position):
            return []
        found: list[StoredRecord] = []
        after = self._position
        while True:
            query, params = queries.follow_query(
                self._store.table,
                self._store.schema,
                self._filter,
                floor=self._floor,
                after=after,
                through=(head[0], head[1]),
                limit=FETCH_ROWS,
                search_values=self._filter.search is not None and self._store.search_values,
            )
            rows = self._store.fetch_records(query, params)
            found += rows
            if len(rows) < FETCH_ROWS:
                break
            after = (rows[-1].commit_lsn, rows[-1].seq)
        self._advance_to(head)
        return found

    def _head(self) -> tuple[str, int, datetime] | None:
        assert self._floor is not None
        rows = self._store.fetch(queries.head_query(self._store.table), [self._floor])
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def _advance_to(self, head: tuple[str, int, datetime] | None) -> None:
        if head is None:
            return
        self._position = (head[0], head[1])
        assert self._floor is not None
        self._floor = max(self._floor, head[2] - self.SLACK)


def _lsn_key(position: tuple[str, int]) -> tuple[int, int]:
    return int(Lsn.parse(position[0])), position[1]
