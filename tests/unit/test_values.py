"""Value conversion (cdc.pipeline.values): pgoutput text forms → the JSON PostgreSQL's to_jsonb()
makes.

Expected values are what to_jsonb() returns on a session with DateStyle=ISO and TimeZone=UTC
(the replication session's settings), written out by hand from PostgreSQL's documented
behaviour: numbers stay JSON numbers with every digit, NaN and the infinities become strings,
date/time values use the XSD form ('T' separator, '+00:00' offsets), arrays become JSON arrays
whatever their bounds.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.pipeline.values import (
    CAST_HSTORE,
    CAST_SERVER,
    TypeInfo,
    TypeRegistry,
    as_hstore,
    converter_for,
    parse_array,
    parse_hstore,
)

BOOL, BYTEA, INT8, INT2, INT4, TEXT, OID, JSON_OID = 16, 17, 20, 21, 23, 25, 26, 114
FLOAT4, FLOAT8, VARCHAR, DATE, TIME, TIMESTAMP = 700, 701, 1043, 1082, 1083, 1114
TIMESTAMPTZ, INTERVAL, TIMETZ, NUMERIC, UUID, JSONB = 1184, 1186, 1266, 1700, 2950, 3802
BOOL_ARRAY, INT4_ARRAY, TEXT_ARRAY, NUMERIC_ARRAY, JSONB_ARRAY = 1000, 1007, 1009, 1231, 3807
TIMESTAMPTZ_ARRAY, VARCHAR_ARRAY = 1185, 1015


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load(text: str) -> Any:
    """Strict JSON: NaN/Infinity literals refused, numbers read exactly."""
    return json.loads(text, parse_float=Decimal, parse_constant=_no_constants)


def to_json(type_oid: int, text: str) -> Any:
    return load(converter_for(type_oid)(text))


# -- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_oid", "text", "expected"),
    [
        (INT2, "-7", -7),
        (INT4, "42", 42),
        (INT8, "-9223372036854775808", -9223372036854775808),
        (INT8, "9223372036854775807", 9223372036854775807),
        (NUMERIC, "12.50", Decimal("12.50")),
        (NUMERIC, "-0.000000000000000000001", Decimal("-1E-21")),
        (FLOAT8, "0.1", Decimal("0.1")),
        (FLOAT8, "1e+100", Decimal("1e100")),
        (FLOAT4, "-1.5e-07", Decimal("-1.5e-7")),
    ],
)
def test_numbers_become_json_numbers(type_oid: int, text: str, expected: object) -> None:
    assert to_json(type_oid, text) == expected


def test_forty_digit_numeric_keeps_every_digit() -> None:
    text = "1234567890123456789012345678901234567890.0123456789"
    rendered = converter_for(NUMERIC)(text)
    assert rendered == text
    assert load(rendered) == Decimal(text)


@pytest.mark.parametrize(
    ("type_oid", "text"),
    [
        (NUMERIC, "NaN"),
        (NUMERIC, "Infinity"),
        (NUMERIC, "-Infinity"),
        (FLOAT8, "NaN"),
        (FLOAT8, "Infinity"),
        (FLOAT4, "-Infinity"),
    ],
)
def test_nan_and_infinities_become_strings(type_oid: int, text: str) -> None:
    assert to_json(type_oid, text) == text


@given(st.decimals(min_value=-(10**60), max_value=10**60, allow_nan=False, allow_infinity=False))
def test_any_numeric_text_round_trips_exactly(value: Decimal) -> None:
    text = format(value, "f")  # numeric_out never uses exponent notation
    assert to_json(NUMERIC, text) == value


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_int8_round_trips_exactly(value: int) -> None:
    assert to_json(INT8, str(value)) == value


# -- booleans, JSON, strings -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [("t", True), ("f", False)])
def test_booleans_become_json_booleans(text: str, expected: bool) -> None:
    assert converter_for(BOOL)(text) == json.dumps(expected)


@pytest.mark.parametrize("type_oid", [JSON_OID, JSONB])
def test_json_and_jsonb_are_embedded_as_documents(type_oid: int) -> None:
    text = '{"a": [1, 2.50, {"b": null, "c": "x\\"y"}], "d": true}'
    assert to_json(type_oid, text) == {
        "a": [1, Decimal("2.50"), {"b": None, "c": 'x"y'}],
        "d": True,
    }


@pytest.mark.parametrize(
    "type_oid", [TEXT, VARCHAR, OID, DATE, TIME, INTERVAL, UUID, BYTEA, 600, 3614, 999_999]
)
@pytest.mark.parametrize(
    "text", ["plain", 'quote " and \\ backslash', "tab\tnew\nline", "caf\u00e9 \u2603 \U0001f600"]
)
def test_string_like_and_unknown_types_become_json_strings(type_oid: int, text: str) -> None:
    assert to_json(type_oid, text) == text


@pytest.mark.parametrize(
    ("type_oid", "text"),
    [
        (DATE, "2024-01-02"),
        (TIME, "03:04:05.5"),
        (INTERVAL, "1 day 02:00:00"),
        (UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        (BYTEA, "\\x01ff"),
        (OID, "16384"),
        (600, "(1,2)"),  # point: not a number in to_jsonb
    ],
)
def test_types_that_to_jsonb_prints_as_their_text(type_oid: int, text: str) -> None:
    assert to_json(type_oid, text) == text


@given(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00")))
def test_any_text_value_becomes_the_same_json_string(text: str) -> None:
    assert to_json(TEXT, text) == text


# -- dates and times ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_oid", "text", "expected"),
    [
        (TIMESTAMP, "2024-01-02 03:04:05", "2024-01-02T03:04:05"),
        (TIMESTAMP, "2024-01-02 03:04:05.123456", "2024-01-02T03:04:05.123456"),
        (TIMESTAMP, "infinity", "infinity"),
        (TIMESTAMP, "-infinity", "-infinity"),
        (TIMESTAMPTZ, "2024-01-02 03:04:05+00", "2024-01-02T03:04:05+00:00"),
        (TIMESTAMPTZ, "2024-01-02 03:04:05.5+05:30", "2024-01-02T03:04:05.5+05:30"),
        (TIMESTAMPTZ, "1999-12-31 23:59:59-08", "1999-12-31T23:59:59-08:00"),
        (TIMESTAMPTZ, "infinity", "infinity"),
        (TIMETZ, "12:34:56+00", "12:34:56+00"),
        (TIMETZ, "12:34:56.789-03", "12:34:56.789-03"),
        (TIMETZ, "12:34:56+05:30", "12:34:56+05:30"),
        (DATE, "2024-02-29", "2024-02-29"),
    ],
)
def test_date_and_time_values_use_the_xsd_form(type_oid: int, text: str, expected: str) -> None:
    assert to_json(type_oid, text) == expected


# -- arrays ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_oid", "text", "expected"),
    [
        (INT4_ARRAY, "{1,2,3}", [1, 2, 3]),
        (INT4_ARRAY, "{{1,2},{3,4}}", [[1, 2], [3, 4]]),
        (INT4_ARRAY, "{{{1}},{{2}}}", [[[1]], [[2]]]),
        (INT4_ARRAY, "{1,NULL,3}", [1, None, 3]),
        (INT4_ARRAY, "[0:1]={1,2}", [1, 2]),
        (INT4_ARRAY, "[1:1][0:1]={{1,2}}", [[1, 2]]),
        (INT4_ARRAY, "{}", []),
        (TEXT_ARRAY, "{}", []),
        (TEXT_ARRAY, '{"a,b","c\\"d","e\\\\f","{}",plain}', ["a,b", 'c"d', "e\\f", "{}", "plain"]),
        (TEXT_ARRAY, '{NULL,"NULL",null,"null"}', [None, "NULL", None, "null"]),
        (TEXT_ARRAY, '{"",a b}', ["", "a b"]),
        (TEXT_ARRAY, '{"with space"," lead","trail "}', ["with space", " lead", "trail "]),
        (TEXT_ARRAY, '{{a,"b}"},{NULL,d}}', [["a", "b}"], [None, "d"]]),
        (VARCHAR_ARRAY, "{caf\u00e9,\u2603}", ["caf\u00e9", "\u2603"]),
        (BOOL_ARRAY, "{t,f,NULL}", [True, False, None]),
        (NUMERIC_ARRAY, "{1.50,NaN,-Infinity}", [Decimal("1.50"), "NaN", "-Infinity"]),
        (JSONB_ARRAY, '{"{\\"a\\": 1}","[1, 2]",NULL}', [{"a": 1}, [1, 2], None]),
        (
            TIMESTAMPTZ_ARRAY,
            '{"2024-01-02 03:04:05+00",infinity}',
            ["2024-01-02T03:04:05+00:00", "infinity"],
        ),
    ],
)
def test_arrays_become_json_arrays_of_converted_elements(
    type_oid: int, text: str, expected: object
) -> None:
    assert to_json(type_oid, text) == expected


@pytest.mark.parametrize(
    ("type_oid", "text", "expected"),
    [(143, "{<a/>,<b/>}", ["<a/>", "<b/>"]), (1561, "{101,010}", ["101", "010"])],
)
def test_builtin_array_types_without_an_element_rule_still_become_arrays(
    type_oid: int, text: str, expected: list[str]
) -> None:
    assert to_json(type_oid, text) == expected


def array_out(items: list[str | None]) -> str:
    """A one-dimensional array's text form, quoted the way PostgreSQL's array_out does."""
    parts = []
    for item in items:
        if item is None:
            parts.append("NULL")
            continue
        needs_quotes = (
            item == ""
            or (item.isascii() and item.upper() == "NULL")
            or any(ch in '{},"\\' or ch in " \t\n\r\v\f" for ch in item)
        )
        if needs_quotes:
            parts.append('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            parts.append(item)
    return "{" + ",".join(parts) + "}"


# array_out only quotes for the six ASCII spaces; other whitespace must survive unquoted.
_PY_ONLY_SPACES = "".join(
    ch for ch in map(chr, range(0x3001)) if ch.isspace() and ch not in " \t\n\r\v\f"
)
_element = st.one_of(
    st.none(),
    st.sampled_from(["NULL", "null", "", " ", "{}", '"', "\\", ",", "a,b", 'x"y\\z']),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00")),
    st.text(st.sampled_from(_PY_ONLY_SPACES + "ab ")),
)


@settings(max_examples=300)
@given(st.lists(_element, max_size=8))
def test_text_array_in_array_out_form_becomes_the_same_json_list(
    items: list[str | None],
) -> None:
    rendered = converter_for(TEXT_ARRAY)(array_out(items))
    assert rendered == json.dumps(items, ensure_ascii=False)
    assert json.loads(rendered) == items


def test_array_out_quoting_helper_matches_postgresql_examples() -> None:
    # From the PostgreSQL docs ("Array Value Input"/"Array Value Output"): the helper the
    # property test relies on quotes exactly where the server does.
    assert array_out(["a", "b c", None, "NULL", "", 'q"', "x\\y"]) == (
        '{a,"b c",NULL,"NULL","","q\\"","x\\\\y"}'
    )


@pytest.mark.parametrize(
    "items",
    [["\u00a0tag"], ["tag\u00a0"], ["\u2003"], ["a", "\x1c", "b"], ["\u3000x\u3000"]],
    ids=["leading-nbsp", "trailing-nbsp", "em-space-only", "file-separator", "ideographic"],
)
def test_text_array_keeps_non_ascii_whitespace_at_element_edges(items: list[str]) -> None:
    assert to_json(TEXT_ARRAY, array_out(items)) == items


# -- box[]: the one built-in array whose elements are separated by ';' ------------------------


def test_box_array_splits_on_semicolons_not_on_the_commas_inside_a_box() -> None:
    assert to_json(1020, "{(1,1),(0,0);(3,2),(-1,-1.5)}") == ["(1,1),(0,0)", "(3,2),(-1,-1.5)"]
    assert to_json(1020, "{NULL;(0,0),(0,0)}") == [None, "(0,0),(0,0)"]


def test_array_with_another_delimiter_keeps_commas_inside_elements() -> None:
    # PostGIS types use ':' (their typdelim); array_out quotes only what holds ':'
    assert parse_array('{NULL:0101,00:"a:b"}', ":") == [None, "0101,00", "a:b"]


# -- hstore: its cast to json, rendered from hstore_out's text --------------------------------


def hstore_out(pairs: dict[str, str | None]) -> str:
    """What hstore_out prints (contrib/hstore/hstore_io.c): pairs in hstore's order (key length
    in bytes, then bytes), keys and values quoted with '"' and '\\' escaped by a backslash."""

    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    ordered = sorted(pairs.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode()))
    return ", ".join(quoted(k) + "=>" + ("NULL" if v is None else quoted(v)) for k, v in ordered)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "{}"),
        ('"a"=>"1"', '{"a": "1"}'),
        ('"a"=>"1", "b"=>NULL', '{"a": "1", "b": null}'),
        ('""=>"", "a"=>"NULL"', '{"": "", "a": "NULL"}'),
        ('"x\\"y"=>"c\\\\d"', '{"x\\"y": "c\\\\d"}'),
        ('"k"=>"a=>b, \\"c\\"=>NULL"', '{"k": "a=>b, \\"c\\"=>NULL"}'),
        ('"tab"=>"\t\n\x01"', '{"tab": "\\t\\n\\u0001"}'),
        ('"€"=>"😀"', '{"€": "😀"}'),
    ],
)
def test_hstore_renders_as_to_jsonb_prints_it(text: str, expected: str) -> None:
    # the expected texts are `SELECT to_jsonb('...'::hstore)::text` on PostgreSQL 15
    assert as_hstore(text) == expected


hstore_text = st.text(
    st.sampled_from(['"', "\\", "=", ">", ",", " ", "N", "U", "L", "\n", "\x1f", "é", "😀"])
    | st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=8,
)  # fmt: skip


@given(st.dictionaries(hstore_text, st.none() | hstore_text | st.just("NULL"), max_size=6))
def test_any_hstore_renders_as_its_pairs_in_jsonb_text(pairs: dict[str, str | None]) -> None:
    text = hstore_out(pairs)
    assert dict(parse_hstore(text)) == pairs
    ordered = dict(sorted(pairs.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode())))
    assert as_hstore(text) == json.dumps(ordered, ensure_ascii=False)  # ", " and ": " as jsonb


@pytest.mark.parametrize(
    "text", ['"a"', '"a"=>', '"a"=>"1",', '"a"=>"1" "b"=>"2"', "a=>1", '"a"=>"1', '"a"->"1"']
)
def test_text_that_is_not_hstore_output_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="hstore"):
        parse_hstore(text)


# -- the registry: which converter a type gets ------------------------------------------------

HSTORE, HSTORE_ARR, ATTRS, GEOM, GEOM_ARR, PLACE, SITE, TAGS, GEOG = range(20000, 20009)


def registry() -> TypeRegistry:
    types = TypeRegistry()
    for info in (
        TypeInfo(HSTORE, "b", json_cast=CAST_HSTORE, name=("public", "hstore")),
        TypeInfo(HSTORE_ARR, "b", element_oid=HSTORE, name=("public", "_hstore")),
        TypeInfo(ATTRS, "d", base_oid=HSTORE, name=("public", "attrs")),
        TypeInfo(GEOM, "b", json_cast=CAST_SERVER, name=("public", "geometry")),
        TypeInfo(GEOM_ARR, "b", element_oid=GEOM, name=("public", "_geometry"), delimiter=":"),
        TypeInfo(PLACE, "d", base_oid=GEOM, name=("public", "place")),
        TypeInfo(SITE, "c", fields=(("name", 25), ("at", PLACE)), name=("public", "site")),
        TypeInfo(TAGS, "c", fields=(("n", 23), ("h", ATTRS)), name=("public", "tags")),
        TypeInfo(GEOG, "b", name=("public", "geography")),
    ):
        types.add(info)
    return types


def test_hstore_its_domains_arrays_and_composites_render_in_the_daemon() -> None:
    types = registry()
    assert types.converter(ATTRS)('"a"=>"1"') == '{"a": "1"}'
    assert json.loads(types.converter(HSTORE_ARR)('{"\\"a\\"=>\\"1\\"",NULL}')) == [
        {"a": "1"},
        None,
    ]
    assert json.loads(types.converter(TAGS)('(7,"""k""=>NULL")')) == {"n": 7, "h": {"k": None}}
    assert types.server_columns([HSTORE, HSTORE_ARR, ATTRS, TAGS, GEOG, 23]) == ()


def test_a_type_without_a_cast_to_json_is_its_text() -> None:
    assert registry().converter(GEOG)("0101000020E6") == '"0101000020E6"'


def test_only_a_cast_the_daemon_cannot_mirror_makes_the_registry_batch_for_the_server() -> None:
    types = TypeRegistry()
    types.add(TypeInfo(HSTORE, "b", json_cast=CAST_HSTORE))
    assert not types.server_rendered
    types.add(TypeInfo(GEOM, "b", json_cast=CAST_SERVER))
    assert types.server_rendered


def test_columns_reaching_a_server_cast_are_rendered_whole_by_the_server() -> None:
    types = registry()
    columns = types.server_columns([23, GEOM, PLACE, GEOM_ARR, SITE, HSTORE])
    # (position, the type the value is cast to: domains looked through, arrays and
    # composites whole)
    assert [(position, info.name) for position, info in columns] == [
        (1, ("public", "geometry")),
        (2, ("public", "geometry")),
        (3, ("public", "_geometry")),
        (4, ("public", "site")),
    ]


def test_server_rendered_values_are_looked_up_then_forgotten() -> None:
    types = registry()
    convert = types.converter(PLACE)
    types.renderings(GEOM)["0101"] = '{"type": "Point", "coordinates": [1, 2]}'
    assert convert("0101") == '{"type": "Point", "coordinates": [1, 2]}'
    types.forget_renderings()
    with pytest.raises(LookupError, match=r"public\.geometry"):
        convert("0101")
