"""COPY text encoding of activity records (cdc.pipeline.copy_lines: encode_copy_rows,
encode_chained_rows).

The records are decoded again with a small parser written from PostgreSQL's COPY
documentation ("Text Format"): lines end at a newline, fields are separated by tabs, ``\\N``
is NULL, and a backslash starts an escape sequence.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.lsn import format_lsn
from cdc.pipeline.activity import RECORD_COLUMNS, ActivityRecord
from cdc.pipeline.sink import CHAINED_COLUMNS, ChainHead, encode_chained_rows, encode_copy_rows
from cdc.store.chain import iso_utc_text, link_hash
from tests.unit.messages import record

_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", re.DOTALL)


def _unescape(match: re.Match[str]) -> str:
    octal, hexa, other = match.groups()
    if octal is not None:
        return chr(int(octal, 8))
    if hexa is not None:
        return chr(int(hexa, 16))
    return _SIMPLE_ESCAPES.get(other, other)


def parse_copy_text(data: str) -> list[list[str | None]]:
    """Rows of a COPY ... FROM STDIN text-format stream, as the server would read them."""
    assert data == "" or data.endswith("\n"), "every row ends with a newline"
    rows = []
    for line in data.split("\n")[:-1]:
        assert "\r" not in line, "a raw carriage return would end the row for the server"
        fields: list[str | None] = []
        for raw in line.split("\t"):
            fields.append(None if raw == "\\N" else _ESCAPE.sub(_unescape, raw))
        rows.append(fields)
    return rows


def as_fields(r: ActivityRecord) -> list[str | None]:
    return [None if value is None else str(value) for value in r]


def test_each_record_is_one_line_with_a_field_per_column() -> None:
    records = [record(1), record(2), record(3)]
    data = encode_copy_rows(records)
    assert data.count("\n") == 3
    assert [len(line.split("\t")) for line in data.splitlines()] == [len(RECORD_COLUMNS)] * 3
    assert parse_copy_text(data) == [as_fields(r) for r in records]


def test_no_records_encode_to_nothing() -> None:
    assert encode_copy_rows([]) == ""


def test_none_is_written_as_backslash_n() -> None:
    r = record(1)._replace(
        entity_id=None, actor_id=None, context=None, old=None, xid=None, schema_name=None
    )
    fields = encode_copy_rows([r]).rstrip("\n").split("\t")
    columns = dict(zip(RECORD_COLUMNS, fields, strict=True))
    for name in ("entity_id", "actor_id", "context", "old", "xid", "schema_name"):
        assert columns[name] == "\\N"
    assert columns["new"] == '{"id":1}'


def test_text_that_reads_backslash_n_is_not_null() -> None:
    r = record(1)._replace(summary="\\N", entity_id="\\N")
    (fields,) = parse_copy_text(encode_copy_rows([r]))
    assert fields == as_fields(r)
    assert "\\N" in fields


@pytest.mark.parametrize(
    ("field", "value", "encoded"),
    [
        ("summary", "a\\b", "a\\\\b"),
        ("summary", "tab\there", "tab\\there"),
        ("new", '{"note":"line1\nline2"}', '{"note":"line1\\nline2"}'),
        ("old", "cr\rhere", "cr\\rhere"),
        ("action", "user\t.insert", "user\\t.insert"),
        ("category", "a\nb", "a\\nb"),
        ("entity_type", "x\\y", "x\\\\y"),
        ("entity_id", "1\t2", "1\\t2"),
        ("actor_id", "bob\r\n", "bob\\r\\n"),
        ("context", '{"k":"\\\\"}', '{"k":"\\\\\\\\"}'),
        ("changes", "\n", "\\n"),
        ("table_name", "we\tird", "we\\tird"),
        ("schema_name", "s\\", "s\\\\"),
    ],
)
def test_backslash_tab_newline_and_cr_are_escaped_in_every_text_field(
    field: str, value: str, encoded: str
) -> None:
    data = encode_copy_rows([record(1)._replace(**{field: value})])
    fields = data.rstrip("\n").split("\t")
    assert data.count("\n") == 1
    assert len(fields) == len(RECORD_COLUMNS)
    assert fields[RECORD_COLUMNS.index(field)] == encoded


_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
_tricky = st.one_of(_text, st.sampled_from(["\\N", "\\", "\t", "\n", "\r", "\\.", "", "a\\tb"]))
_maybe = st.none() | _tricky
_records = st.builds(
    ActivityRecord,
    occurred_at=st.datetimes().map(lambda d: d.isoformat()),
    source=st.just("database"),
    operation=st.sampled_from(["insert", "update", "delete", "truncate"]),
    action=_tricky,
    category=_tricky,
    severity=st.sampled_from(["debug", "info", "notice", "warning", "error", "critical"]),
    schema_name=_maybe,
    table_name=_maybe,
    entity_type=_maybe,
    entity_id=_maybe,
    actor_id=_maybe,
    context=_maybe,
    old=_maybe,
    new=_maybe,
    changes=_maybe,
    summary=_maybe,
    xid=st.none() | st.integers(0, 2**32 - 1),
    commit_lsn=st.integers(0, 2**64 - 1).map(format_lsn),
    seq=st.integers(0, 2**31 - 1),
)


@settings(max_examples=200)
@given(st.lists(_records, max_size=5))
def test_copy_text_decodes_back_to_the_same_field_values(records: list[ActivityRecord]) -> None:
    data = encode_copy_rows(records)
    assert parse_copy_text(data) == [as_fields(r) for r in records]


@given(st.text(string.printable))
def test_parser_reads_back_what_it_is_given_for_plain_text(value: str) -> None:
    # The test's own parser: a field without backslash, tab or line break reads as itself.
    plain = value.replace("\\", "").replace("\t", "").replace("\n", "").replace("\r", "")
    assert parse_copy_text(plain + "\n") == [[plain]]


# -- the chained rows: what the daemon hashes is what the line sends ----------------------------

_utc_records = _records.map(
    lambda r: r._replace(
        occurred_at=datetime.fromisoformat(r.occurred_at).replace(tzinfo=UTC).isoformat()
    )
)


@settings(max_examples=200)
@given(
    st.lists(_utc_records, max_size=6), st.binary(min_size=32, max_size=32), st.integers(0, 10**12)
)
def test_each_chained_line_links_to_the_one_before_over_the_fields_it_sends(
    records: list[ActivityRecord], seed: bytes, position: int
) -> None:
    """Read back as the server would, each line's fields (with the timestamps as the verifier
    prints them) give its hash, chained from the head given; the new head is the last line."""
    recorded_at = datetime(2026, 12, 4, 15, 0, 0, 7, tzinfo=UTC)
    data, head = encode_chained_rows(records, ChainHead(seed, position), recorded_at)
    rows = parse_copy_text(data.decode())  # UTF-8 bytes, as COPY sends them
    prev = seed
    for number, (r, fields) in enumerate(zip(records, rows, strict=True), start=1):
        named = dict(zip(CHAINED_COLUMNS, fields, strict=True))
        assert named["chain_position"] == str(position + number)
        assert named["recorded_at"] == "2026-12-04T15:00:00.000007+00"
        assert named["prev_hash"] == "\\x" + prev.hex()
        stored = datetime.fromisoformat(str(named["occurred_at"])).astimezone(UTC)
        values = (
            stored.strftime("%Y-%m-%dT%H:%M:%S.%f").rjust(26, "0"),
            "2026-12-04T15:00:00.000007",
            *(named[c] for c in RECORD_COLUMNS[1:]),
            named["chain_position"],
        )
        assert named["hash"] == "\\x" + link_hash(prev, values).hex()
        assert as_fields(r) == [named[c] for c in RECORD_COLUMNS]
        prev = bytes.fromhex(str(named["hash"])[2:])
    assert head == ChainHead(prev, position + len(records))


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("2024-05-06T07:08:09.123456+00:00", "2024-05-06T07:08:09.123456"),
        ("2024-05-06T07:08:09+02:00", "2024-05-06T05:08:09.000000"),
        ("2024-05-06 07:08:09.5Z", "2024-05-06T07:08:09.500000"),
        ("0999-01-01T00:00:00+00:00", "0999-01-01T00:00:00.000000"),
        ("2024-05-06T07:08:09", None),  # no offset: the sink session's TimeZone decides
        ("2024-05-06T07:08:09.1234567+00:00", None),  # the server rounds, Python truncates
        ("epoch", None),
        ("0001-01-01T00:00:00+01:00", None),  # before year 1 in UTC
    ],
)
def test_occurred_at_is_read_here_only_when_python_reads_it_as_the_server_does(
    text: str, canonical: str | None
) -> None:
    assert iso_utc_text(text) == canonical
