"""The sink's binary COPY on a real PostgreSQL (cdc.pipeline.copy_lines.encode_binary_rows):
the stored rows are the ones the text COPY stores, column by column; a flush the binary rows
do not carry goes as text; a record the server refuses in binary is named by its row, parked
with ``on_refused = "dead_letter"``, and nothing else is lost; the chain verifies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cdc.pipeline.sink
import cdc.pipeline.sink_copy
from cdc.config import Settings
from cdc.errors import SinkError
from cdc.pipeline.activity import ActivityRecord
from cdc.pipeline.batching import Flush
from cdc.pipeline.copy_lines import CHAINED_COLUMNS
from cdc.pipeline.sink import Sink
from cdc.pipeline.sink_copy import CopyFormat
from cdc.store.chain import verify_chain
from tests.fix_pg import PgDatabase
from tests.integration.helpers import setup_and_settings
from tests.integration.test_store import (
    _fresh_lsns,  # noqa: F401  (the autouse fixture of made-up LSNs)
    checkpoint_of,
    synthetic,
)

pytestmark = pytest.mark.integration

DDL = "CREATE TABLE public.accounts (id bigint PRIMARY KEY, email text, balance numeric);"
TABLES = [{"name": "public.accounts", "entity_type": "account", "category": "account"}]
RECORDED_AT = datetime(2026, 12, 5, 0, 30, 0, 654321, tzinfo=UTC)
# Every stored column, as the server's output functions print it (the documents' text, the
# times in UTC) and as psycopg loads it: both must be equal whichever way the rows went.
STORED = ", ".join(f"{name}, {name}::text" for name in CHAINED_COLUMNS)


@pytest.fixture
def store(pg: PgDatabase) -> Settings:
    return setup_and_settings(pg, DDL, TABLES)


class _FixedClock(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> _FixedClock:
        return cls.fromtimestamp(RECORDED_AT.timestamp(), tz)


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether each COPY the sinks send is binary; recorded_at fixed, so that two writes of
    the same records are the same rows (hashes included)."""
    sent: list[bool] = []
    send = CopyFormat.send

    def spy(
        self: CopyFormat, conn: psycopg.Connection[Any], data: str | bytes, binary: bool
    ) -> None:
        sent.append(binary)
        send(self, conn, data, binary)

    monkeypatch.setattr(CopyFormat, "send", spy)
    monkeypatch.setattr(cdc.pipeline.sink, "datetime", _FixedClock)
    monkeypatch.setattr(cdc.pipeline.sink_copy, "datetime", _FixedClock)
    yield sent


def _sink(pg: PgDatabase, *, binary: bool = True, **options: Any) -> Sink:
    sink = Sink(pg.dsn, schema="activity", table="records", slot=pg.slot, **options)
    sink.open()
    if not binary:
        sink._format.jsonb = None  # as for a store whose columns are not the binary rows' types
    return sink


def _stored_in_open_transaction(sink: Sink, records: list[ActivityRecord]) -> list[Any]:
    """Write the records without a checkpoint (the sink transaction stays open), read what
    the store holds from inside it, and roll it all back: the next write starts afresh."""
    sink.write(Flush(records, None))
    assert sink._conn is not None
    rows = sink._conn.execute(
        f"SELECT {STORED} FROM activity.records r ORDER BY r.chain_position"
    ).fetchall()
    sink._conn.rollback()
    sink._head = sink._head_at = None
    return rows


_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
_document = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
).map(lambda value: json.dumps(value, ensure_ascii=False, allow_nan=False))
_offset = st.integers(-15 * 60, 15 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_records = st.lists(
    st.builds(
        ActivityRecord,
        occurred_at=st.datetimes(
            min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=_offset
        ).map(lambda d: d.isoformat()),
        # not escaped in the text lines (a word of the daemon's): no tab or newline in it
        source=st.sampled_from(["database", "application", "migration", "é ü"]),
        operation=st.sampled_from(["insert", "update", "delete", "truncate", "message"]),
        action=_text,
        category=_text,
        severity=st.sampled_from(["info", "warning", "error"]),
        schema_name=st.none() | _text,
        table_name=st.none() | _text,
        entity_type=st.none() | _text,
        entity_id=st.none() | _text,
        actor_id=st.none() | _text,
        context=st.none() | _document,
        old=st.none() | _document,
        new=st.none() | _document,
        changes=st.none() | _document,
        summary=st.none() | _text,
        xid=st.none() | st.integers(0, 2**63 - 1),
        commit_lsn=st.just(""),
        seq=st.just(0),
    ),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(_records, st.integers(0, 2**64 - 1), st.integers(0, 2**31 - 100))
def test_the_binary_copy_stores_the_rows_the_text_copy_stores(
    pg: PgDatabase,
    store: Settings,
    copies: list[bool],
    records: list[ActivityRecord],
    lsn: int,
    seq: int,
) -> None:
    """Hostile text, unicode, documents with big numbers, NULLs, LSNs and numbers up to their
    columns' limits, times with offsets: written once in binary, once in text, the stored rows
    are equal column by column (their values and their text), hashes included."""
    records = [
        r._replace(commit_lsn=f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}", seq=seq + i)
        for i, r in enumerate(records)
    ]
    binary, text = _sink(pg), _sink(pg, binary=False)
    try:
        copies.clear()
        in_binary = _stored_in_open_transaction(binary, records)
        in_text = _stored_in_open_transaction(text, records)
    finally:
        binary.close()
        text.close()
    assert copies == [True, False]
    assert in_binary == in_text
    assert len(in_binary) == len(records)


def test_rows_written_in_binary_verify_and_equal_the_text_ones_after_commit(
    pg: PgDatabase, store: Settings, copies: list[bool]
) -> None:
    now = datetime.now(UTC)
    # context in jsonb's own text (the daemon's; what it hashes is what jsonb prints)
    context = '{"ip": "10.0.0.1", "é": [1, 2.50, 0]}'
    first = synthetic(now, 3, context=context, xid=2**63 - 1)
    second = synthetic(now, 2, summary="tab\there\\N\nnew line", new=None, entity_id=None)
    sink = _sink(pg)
    try:
        sink.write(Flush(first, checkpoint_of(first)))
        sink.write(Flush(second, checkpoint_of(second)))
    finally:
        sink.close()
    assert copies == [True, True]
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        chain = verify_chain(conn, "activity", "records")
    assert chain.problem is None and chain.checked == 5
    stored = pg.execute("SELECT context::text, xid, summary FROM activity.records")
    assert (context, 2**63 - 1, "account 1 created") in stored
    assert (None, 1, "tab\there\\N\nnew line") in stored


@pytest.mark.parametrize("occurred_at", ["2026-12-05 01:02:03.5", "2026-12-05T01:02:03"])
def test_a_flush_with_a_time_only_the_server_reads_goes_as_text(
    pg: PgDatabase, store: Settings, copies: list[bool], occurred_at: str
) -> None:
    """An application event's own time without an offset is read by the server in the sink
    session: that flush goes as text, the ones around it binary, and the chain holds over all
    of them."""
    now = datetime.now(UTC)
    before, odd, after = synthetic(now, 2), synthetic(now, 1), synthetic(now, 2)
    odd = [odd[0]._replace(occurred_at=occurred_at, source="application")]
    sink = _sink(pg)
    try:
        sink.write(sink.prepare(Flush(before, checkpoint_of(before))))
        sink.write(sink.prepare(Flush(odd, None)))  # a chunk: committed with the next
        sink.write(sink.prepare(Flush(after, checkpoint_of(after))))
    finally:
        sink.close()
    assert copies == [True, False, True]
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 5
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        chain = verify_chain(conn, "activity", "records")
    assert chain.problem is None and chain.checked == 5


def test_a_number_out_of_its_column_goes_as_text_and_is_refused_by_its_line(
    pg: PgDatabase, store: Settings, copies: list[bool]
) -> None:
    records = synthetic(datetime.now(UTC), 3)
    records[1] = records[1]._replace(seq=2**31)
    sink = _sink(pg)
    try:
        with pytest.raises(SinkError, match=r"key 1 \(insert, commit .*, seq 2147483648\)"):
            sink.write(Flush(records, checkpoint_of(records)))
    finally:
        sink.close()
    assert copies == [False]
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 0


@pytest.mark.parametrize(
    ("poison", "sqlstate"),
    [
        ({"summary": "nul \x00 inside"}, "22021"),  # not text PostgreSQL stores
        ({"new": '{"id": 1,}'}, "22P02"),  # not a JSON document
        ({"context": "[1, 2"}, "22P02"),  # nor a jsonb one
        ({"source": None}, "23502"),  # a NOT NULL column
        ({"entity_id": "13"}, "23514"),  # a constraint of the store
    ],
)
def test_a_record_refused_in_binary_is_parked_and_the_rest_is_written(
    pg: PgDatabase, store: Settings, copies: list[bool], poison: dict[str, Any], sqlstate: str
) -> None:
    pg.execute("ALTER TABLE activity.records ADD CONSTRAINT no_poison CHECK (entity_id <> '13')")
    records = synthetic(datetime.now(UTC), 5)
    records = [r._replace(entity_id=str(r.seq + 1)) for r in records]
    records[2] = records[2]._replace(**poison)
    sink = _sink(pg, dead_letter=True)
    try:
        assert sink.write(Flush(records, checkpoint_of(records))) == 1
    finally:
        sink.close()
    assert copies == [True, True]  # refused by its row, then the rest, both in binary
    parked = pg.execute("SELECT seq, sqlstate FROM activity.dead_letters")
    assert parked == [(2, sqlstate)]
    stored = pg.execute("SELECT seq FROM activity.records ORDER BY chain_position")
    assert [seq for (seq,) in stored] == [0, 1, 3, 4]
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        chain = verify_chain(conn, "activity", "records")
    assert chain.problem is None and chain.checked == 4


def test_without_dead_letters_a_record_refused_in_binary_is_named_and_nothing_is_written(
    pg: PgDatabase, store: Settings, copies: list[bool]
) -> None:
    records = synthetic(datetime.now(UTC), 4)
    records[3] = records[3]._replace(old='{"broken": }')
    sink = _sink(pg)
    try:
        with pytest.raises(SinkError, match=r"seq 3\).*json.*\[SQLSTATE 22P02\]"):
            sink.write(Flush(records, checkpoint_of(records)))
    finally:
        sink.close()
    assert copies == [True]
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 0


def test_a_store_whose_documents_are_jsonb_is_sent_their_binary_form(
    pg: PgDatabase, store: Settings, copies: list[bool]
) -> None:
    """A store before migration 0022 keeps old, new and changes as jsonb: the sink reads the
    columns' types when it opens and sends those documents with jsonb's version byte."""
    pg.execute(
        "ALTER TABLE activity.records ALTER COLUMN new TYPE jsonb USING new::jsonb, "
        "ALTER COLUMN changes TYPE jsonb USING changes::jsonb"
    )
    records = synthetic(datetime.now(UTC), 2, new='{"id": 1, "name": "é"}', changes="[]")
    sink = _sink(pg)
    try:
        assert sink._format.jsonb == 0b1101
        sink.write(Flush(records, checkpoint_of(records)))
    finally:
        sink.close()
    assert copies == [True]
    stored = pg.execute("SELECT new::text, changes::text FROM activity.records")
    assert stored == [('{"id": 1, "name": "é"}', "[]")] * 2


def test_a_store_with_a_column_of_another_type_is_sent_text(
    pg: PgDatabase, store: Settings, copies: list[bool]
) -> None:
    pg.execute("ALTER TABLE activity.records ALTER COLUMN seq TYPE bigint")
    records = synthetic(datetime.now(UTC), 2)
    sink = _sink(pg)
    try:
        assert sink._format.jsonb is None
        sink.write(Flush(records, checkpoint_of(records)))
    finally:
        sink.close()
    assert copies == [False]
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 2


def test_the_plain_sink_writes_binary_too(
    pg: PgDatabase, store: Settings, copies: list[bool]
) -> None:
    now = datetime.now(UTC)
    plain, odd = synthetic(now, 3), synthetic(now, 1)
    odd = [odd[0]._replace(occurred_at="2026-12-05 01:02:03")]
    sink = _sink(pg, hash_chain=False)
    try:
        sink.write(sink.prepare(Flush(plain, checkpoint_of(plain))))
        sink.write(Flush(odd, checkpoint_of(odd)))  # its commit time: 2026-12-05 01:02:03
    finally:
        sink.close()
    assert copies == [True, False]
    assert pg.execute("SELECT count(*) FROM activity.records WHERE hash IS NULL")[0][0] == 4


def test_documents_that_became_json_under_a_parking_sink_are_sent_again_not_parked(
    pg: PgDatabase, store: Settings, copies: list[bool]
) -> None:
    """Migration 0022 (jsonb to json) run by cdc setup while the daemon runs: the jsonb form
    the sink read at open is refused by the json column; with the dead letters on, the sink
    reads the columns' types again and sends the records in the new form, parking nothing."""
    pg.execute("ALTER TABLE activity.records ALTER COLUMN new TYPE jsonb USING new::jsonb")
    records = synthetic(datetime.now(UTC), 3)
    sink = _sink(pg, dead_letter=True)
    try:
        assert sink._format.jsonb == 0b101
        pg.execute("ALTER TABLE activity.records ALTER COLUMN new TYPE json USING new::json")
        assert sink.write(Flush(records, checkpoint_of(records))) == 0
        assert sink._format.jsonb == 0b001
    finally:
        sink.close()
    assert copies == [True, True]
    assert pg.execute("SELECT count(*) FROM activity.dead_letters")[0][0] == 0
    assert pg.execute("SELECT new::text FROM activity.records") == [('{"id": 1}',)] * 3


def test_documents_that_became_jsonb_under_the_sink_stop_it_and_nothing_is_parked(
    pg: PgDatabase, store: Settings, copies: list[bool]
) -> None:
    """The other way (a store taken back to jsonb): jsonb refuses the text as an unknown
    version, not as a row's value; the sink stops, parks nothing, and a new one sends jsonb."""
    records = synthetic(datetime.now(UTC), 2)
    sink = _sink(pg, dead_letter=True)
    try:
        pg.execute("ALTER TABLE activity.records ALTER COLUMN new TYPE jsonb USING new::jsonb")
        with pytest.raises(SinkError, match="jsonb version"):
            sink.write(Flush(records, checkpoint_of(records)))
    finally:
        sink.close()
    assert pg.execute("SELECT count(*) FROM activity.dead_letters")[0][0] == 0
    again = _sink(pg, dead_letter=True)
    try:
        assert again.write(Flush(records, checkpoint_of(records))) == 0
    finally:
        again.close()
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 2


def test_documents_that_became_json_under_a_stopping_sink_say_so_and_a_new_write_works(
    pg: PgDatabase, store: Settings, copies: list[bool]
) -> None:
    """Without dead letters the refusal stops the daemon (nothing written or acknowledged),
    saying that the store changed under it; the sink has read the new types again."""
    pg.execute("ALTER TABLE activity.records ALTER COLUMN new TYPE jsonb USING new::jsonb")
    records = synthetic(datetime.now(UTC), 3)
    sink = _sink(pg)
    try:
        pg.execute("ALTER TABLE activity.records ALTER COLUMN new TYPE json USING new::json")
        with pytest.raises(SinkError, match="column types changed while the daemon ran"):
            sink.write(Flush(records, checkpoint_of(records)))
        assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 0
        sink.write(Flush(records, checkpoint_of(records)))
    finally:
        sink.close()
    assert copies == [True, True]
    assert pg.execute("SELECT new::text FROM activity.records") == [('{"id": 1}',)] * 3


def test_a_copy_of_many_pieces_is_written_whole_and_a_refusal_deep_in_it_parks_its_line(
    pg: PgDatabase, store: Settings, copies: list[bool]
) -> None:
    """The sink hands COPY data to libpq in pieces of cdc.pipeline.sink_copy.COPY_PIECE bytes:
    a flush of several pieces arrives whole, in order, chained; a refused record far past the
    first piece is named by its line (dead letters) and the rest is written."""
    pg.execute("ALTER TABLE activity.records ADD CONSTRAINT no_poison CHECK (entity_id <> '1500')")
    now = datetime.now(UTC)
    records = [
        record._replace(
            entity_id=str(index),
            new=json.dumps({"id": index, "note": "x" * 400}, separators=(", ", ": ")),
        )
        for index, record in enumerate(synthetic(now, 2000))
    ]
    sink = _sink(pg, dead_letter=True)
    try:
        data = sink._format.binary_rows(records, None)
        assert data is not None and len(data[0]) > 4 * cdc.pipeline.sink_copy.COPY_PIECE
        sink.write(Flush(records, checkpoint_of(records)))
    finally:
        sink.close()
    stored = [int(r[0]) for r in pg.execute("SELECT entity_id FROM activity.records ORDER BY seq")]
    assert stored == [i for i in range(2000) if i != 1500]
    parked = pg.execute("SELECT entity_id, sqlstate FROM activity.dead_letters")
    assert parked == [("1500", "23514")]
    assert copies[-1] is True  # binary, whole
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        chain = verify_chain(conn, "activity", "records")
    assert chain.problem is None and chain.checked == 1999


def test_a_copy_abandoned_midway_leaves_the_connection_out_of_copy_mode(
    pg: PgDatabase, store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything raised while the data goes to libpq ends the COPY as failed (psycopg's Copy
    does the same): the write fails, nothing of it is stored, and the next write works."""
    records = [
        record._replace(entity_id=str(i), new=json.dumps({"id": i, "note": "x" * 400}))
        for i, record in enumerate(synthetic(datetime.now(UTC), 1000))
    ]
    pieces: list[int] = []
    real = cdc.pipeline.sink_copy.copy_to

    def failing_second_piece(pgconn: Any, buffer: Any, flush: bool) -> Any:
        pieces.append(len(buffer))
        if len(pieces) == 2:
            raise MemoryError("made up")
        return real(pgconn, buffer, flush)

    monkeypatch.setattr(cdc.pipeline.sink_copy, "copy_to", failing_second_piece)
    sink = _sink(pg)
    try:
        with pytest.raises(MemoryError):
            sink.write(Flush(records, checkpoint_of(records)))
        assert sink._conn is not None
        assert sink._conn.info.transaction_status != psycopg.pq.TransactionStatus.ACTIVE
        sink._conn.rollback()
        monkeypatch.setattr(cdc.pipeline.sink_copy, "copy_to", real)
        assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 0
        again = synthetic(datetime.now(UTC), 3)
        sink.write(Flush(again, checkpoint_of(again)))
    finally:
        sink.close()
    assert len(pieces) == 2
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 3
