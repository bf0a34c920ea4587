"""COPY text encoding of activity records (cdc.pipeline.sink.encode_copy_rows).

The records are decoded again with a small parser written from PostgreSQL's COPY
documentation ("Text Format"): lines end at a newline, fields are separated by tabs, ``\\N``
is NULL, and a backslash starts an escape sequence.
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.lsn import format_lsn
from cdc.pipeline.activity import RECORD_COLUMNS, ActivityRecord
from cdc.pipeline.sink import encode_copy_rows
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
