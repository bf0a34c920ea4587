"""The records in PostgreSQL's binary COPY format (cdc.pipeline.copy_lines.encode_binary_rows):
read back field by field as the server reads them, chained with the very hashes of the text
lines, and None (the sink sends text) for a value the binary rows do not carry. Runs on the
compiled encoder and, in tests/unit/test_core_differential.py's pure run, on the reference."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.pipeline.activity import RECORD_COLUMNS, ActivityRecord
from cdc.pipeline.copy_lines import (
    BINARY_COLUMN_TYPES,
    BINARY_SIGNATURE,
    CHAINED_COLUMNS,
    DOCUMENTS,
    ChainHead,
    encode_binary_rows,
    encode_chained_rows,
    jsonb_mask,
)
from cdc.store.chain import iso_utc_text

EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)
RECORDED_AT = datetime(2026, 12, 5, 0, 30, 0, 123456, tzinfo=UTC)
TEXT_FIELDS = range(1, 16)  # source ... summary
DOCUMENT_FIELDS = {RECORD_COLUMNS.index(name): bit for bit, name in enumerate(DOCUMENTS)}


def read_binary_copy(data: bytes) -> list[list[bytes | None]]:
    """The tuples of a binary COPY stream, each field's bytes (None for NULL), as COPY FROM
    reads them; the stream must be whole: signature, tuples, trailer, nothing after."""
    assert data[: len(BINARY_SIGNATURE)] == BINARY_SIGNATURE
    at = len(BINARY_SIGNATURE)
    tuples = []
    while True:
        (count,) = struct.unpack_from(">h", data, at)
        at += 2
        if count == -1:
            break
        fields: list[bytes | None] = []
        for _ in range(count):
            (size,) = struct.unpack_from(">i", data, at)
            at += 4
            if size == -1:
                fields.append(None)
            else:
                fields.append(data[at : at + size])
                at += size
        tuples.append(fields)
    assert at == len(data)
    return tuples


def _int(field: bytes | None) -> int:
    assert field is not None
    return int.from_bytes(field, "big", signed=True)


def _time(field: bytes | None) -> datetime:
    return EPOCH_2000 + timedelta(microseconds=_int(field))


def assert_fields_are_the_records(
    fields: list[bytes | None], record: ActivityRecord, jsonb: int
) -> None:
    assert _time(fields[0]) == datetime.fromisoformat(record.occurred_at).astimezone(UTC)
    for i in TEXT_FIELDS:
        value = record[i]
        if value is not None and i in DOCUMENT_FIELDS and jsonb >> DOCUMENT_FIELDS[i] & 1:
            value = "\x01" + value  # jsonb's version byte
        assert fields[i] == (None if value is None else value.encode())
    assert (None if fields[16] is None else _int(fields[16])) == record.xid
    high, low = record.commit_lsn.split("/")
    assert fields[17] is not None  # pg_lsn: 64 bits, unsigned
    assert int.from_bytes(fields[17], "big") == int(high, 16) << 32 | int(low, 16)
    assert fields[18] is not None and len(fields[18]) == 4 and _int(fields[18]) == record.seq


_text = st.text(st.characters(exclude_categories=("Cs",)))
_document = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
).map(lambda value: json.dumps(value, ensure_ascii=False))
_offset = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_binary_records = st.builds(
    ActivityRecord,
    occurred_at=st.datetimes(
        min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=_offset
    ).map(lambda d: d.isoformat()),
    source=_text,
    operation=st.sampled_from(["insert", "update", "delete", "truncate", "message"]),
    action=_text,
    category=_text,
    severity=st.sampled_from(["info", "warning"]),
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
    commit_lsn=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)).map(
        lambda hl: f"{hl[0]:X}/{hl[1]:x}"
    ),
    seq=st.integers(0, 2**31 - 1),
)


@settings(max_examples=200)
@given(
    st.lists(_binary_records, max_size=6),
    st.binary(min_size=0, max_size=40),
    st.integers(0, 2**62),
    st.integers(0, 15),
)
def test_the_binary_rows_carry_every_value_and_chain_as_the_text_lines_do(
    records: list[ActivityRecord], prev: bytes, position: int, jsonb: int
) -> None:
    head = ChainHead(prev, position)
    found = encode_binary_rows(records, head, RECORDED_AT, jsonb)
    assert found is not None
    data, moved = found
    _, text_moved = encode_chained_rows(records, head, RECORDED_AT)
    assert moved == text_moved  # the same hashes: the chain does not depend on the format
    tuples = read_binary_copy(data)
    assert len(tuples) == len(records)
    hashes = [prev]
    for fields, record in zip(tuples, records, strict=True):
        assert len(fields) == len(CHAINED_COLUMNS)
        assert_fields_are_the_records(fields, record, jsonb)
        assert _time(fields[19]) == RECORDED_AT
        assert _int(fields[20]) == position + len(hashes)
        assert fields[21] == hashes[-1]
        assert fields[22] is not None
        hashes.append(fields[22])
    assert moved == ChainHead(hashes[-1], position + len(records))


@settings(max_examples=100)
@given(st.lists(_binary_records, max_size=6), st.integers(0, 15))
def test_the_plain_binary_rows_carry_the_record_columns_alone(
    records: list[ActivityRecord], jsonb: int
) -> None:
    found = encode_binary_rows(records, None, RECORDED_AT, jsonb)
    assert found is not None and found[1] is None
    tuples = read_binary_copy(found[0])
    for fields, record in zip(tuples, records, strict=True):
        assert len(fields) == len(RECORD_COLUMNS)
        assert_fields_are_the_records(fields, record, jsonb)


def _record(**fields: Any) -> ActivityRecord:
    base: dict[str, Any] = {
        "occurred_at": "2026-12-05T00:30:00.000001+00:00",
        "source": "database",
        "operation": "insert",
        "action": "note.insert",
        "category": "content",
        "severity": "info",
        "schema_name": "public",
        "table_name": "notes",
        "entity_type": "note",
        "entity_id": "1",
        "actor_id": None,
        "context": None,
        "old": None,
        "new": '{"id": 1}',
        "changes": None,
        "summary": "note 1 created",
        "xid": 7,
        "commit_lsn": "16/B374D848",
        "seq": 0,
    }
    return ActivityRecord(**{**base, **fields})


@pytest.mark.parametrize(
    "fields",
    [
        {"occurred_at": "2026-12-05 00:30:00"},  # no offset: the session's TimeZone decides
        {"occurred_at": "epoch"},  # PostgreSQL's own words
        {"occurred_at": "2026-12-05T00:30:00.1234567+00:00"},  # more than microseconds
        {"occurred_at": "2026-02-30T00:30:00.000000+00:00"},  # not a date
        {"occurred_at": "2026-12-31T23:59:60.000000+00:00"},  # a leap second
        {"occurred_at": "2026-12-05T24:00:00.000000+00:00"},  # the end of a day
        {"occurred_at": "0000-12-05T00:30:00.000000+00:00"},  # year 0
        {"occurred_at": "\uff12\uff10\uff12\uff16-12-05T00:30:00.000000+00:00"},  # not ASCII digits
        {"occurred_at": None},
        {"xid": 2**63},  # out of bigint
        {"xid": -1},
        {"xid": True},
        {"seq": 2**31},  # out of integer
        {"seq": -1},
        {"commit_lsn": "16/B374D848 "},
        {"commit_lsn": "123456789/0"},  # nine hex digits: pg_lsn refuses it
        {"commit_lsn": "16"},
        {"commit_lsn": "/16"},
        {"commit_lsn": "g/1"},
        {"commit_lsn": None},
        {"summary": 5},  # not text
        {"new": {"id": 1}},
    ],
)
def test_a_value_the_binary_rows_do_not_carry_sends_the_flush_as_text(
    fields: dict[str, Any],
) -> None:
    records = [_record(), _record(**{"seq": 1, **fields})]
    assert encode_binary_rows(records, ChainHead(bytes(32), 0), RECORDED_AT, 1) is None
    assert encode_binary_rows(records, None, RECORDED_AT, 1) is None
    assert encode_binary_rows(records[:1], None, RECORDED_AT, 1) is not None


@pytest.mark.parametrize(
    "occurred_at",
    [
        "0001-01-01T00:00:00.000000+00:00",
        "1999-12-31T23:59:59.999999+00:00",
        "2000-01-01T00:00:00.000000+00:00",
        "2024-02-29T12:00:00+00:00",
        "2024-05-06T07:08:09+02:00",
        "2024-05-06 07:08:09.5-03:30",
        "2024-05-06T07:08:09Z",
        "9999-12-31T23:59:59.999999+00:00",
    ],
)
def test_a_commit_time_is_the_instant_the_server_reads(occurred_at: str) -> None:
    records = [_record(occurred_at=occurred_at)]
    found = encode_binary_rows(records, None, RECORDED_AT, 0)
    assert found is not None
    ((moment, *_),) = read_binary_copy(found[0])
    utc = iso_utc_text(occurred_at)
    assert utc is not None
    assert _time(moment) == datetime.fromisoformat(utc).replace(tzinfo=UTC)


def test_nul_and_text_copy_escapes_go_as_they_are() -> None:
    """No escaping in binary: backslashes, tabs, newlines and ``\\N`` are the text itself;
    a NUL is sent too, and the server refuses it (the dead letters' test shows which record)."""
    summary = "\\N\t\n\r\\.\x00é"
    found = encode_binary_rows([_record(summary=summary)], None, RECORDED_AT, 0)
    assert found is not None
    ((*_, stored, _xid, _lsn, _seq),) = read_binary_copy(found[0])
    assert stored == summary.encode()


def test_no_records_are_a_whole_stream_of_no_tuples() -> None:
    found = encode_binary_rows([], ChainHead(b"h", 3), RECORDED_AT, 0)
    assert found == (BINARY_SIGNATURE + b"\xff\xff", ChainHead(b"h", 3))


def test_a_surrogate_fails_as_the_text_lines_do() -> None:
    records = [_record(summary="\ud800")]
    with pytest.raises(UnicodeEncodeError):
        encode_chained_rows(records, ChainHead(b"", 0), RECORDED_AT)
    with pytest.raises(UnicodeEncodeError):
        encode_binary_rows(records, ChainHead(b"", 0), RECORDED_AT, 0)


def test_the_documents_stored_as_jsonb_are_read_from_the_store_types() -> None:
    types = {name: kinds[0] for name, kinds in BINARY_COLUMN_TYPES.items()}
    assert jsonb_mask(types, CHAINED_COLUMNS) == 0
    assert jsonb_mask({**types, "context": "jsonb", "changes": "jsonb"}, CHAINED_COLUMNS) == 0b1001
    assert jsonb_mask({**types, "seq": "bigint"}, CHAINED_COLUMNS) is None
    assert jsonb_mask({**types, "hash": "text"}, CHAINED_COLUMNS) is None
    without_chain = {k: v for k, v in types.items() if k not in CHAINED_COLUMNS[19:]}
    assert jsonb_mask(without_chain, CHAINED_COLUMNS) is None
    assert jsonb_mask(without_chain, RECORD_COLUMNS) == 0
