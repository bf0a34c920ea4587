"""Column values as JSON text, the way PostgreSQL's ``to_jsonb()`` renders them.

pgoutput sends each column in its type's text output form. The records store ``old``/``new``
as jsonb that must equal ``to_jsonb(row)``, so each type OID gets a converter from that text
to a JSON fragment. The converters return JSON *text* (not Python objects): the fragments are
concatenated into the row's JSON document without a parse/serialise round trip, and numerics
keep every digit because they are never turned into floats.

Session settings matter: the replication session runs with ``DateStyle=ISO`` and
``TimeZone=UTC`` (see cdc.stream), so date/time text is ISO and the conversion to the
XSD-style that ``to_jsonb`` uses is a fixed rewrite.
"""

from __future__ import annotations

import json.encoder
from collections.abc import Callable
from typing import Final

JsonConverter = Callable[[str], str]

# C-accelerated JSON string encoder used by json.dumps(ensure_ascii=False): quotes and escapes.
encode_json_string: Final[Callable[[str], str]] = json.encoder.encode_basestring  # type: ignore[attr-defined]

# Built-in type OIDs (pg_type.dat); stable across PostgreSQL versions.
BOOL = 16
BYTEA = 17
INT8 = 20
INT2 = 21
INT4 = 23
TEXT = 25
OID = 26
JSON = 114
FLOAT4 = 700
FLOAT8 = 701
VARCHAR = 1043
DATE = 1082
TIME = 1083
TIMESTAMP = 1114
TIMESTAMPTZ = 1184
TIMETZ = 1266
NUMERIC = 1700
JSONB = 3802

_NUMBER_TYPES = frozenset({INT2, INT4, INT8, FLOAT4, FLOAT8, NUMERIC})

# array type OID -> element type OID, for the built-in types whose elements need a converter
# other than "string". Arrays of anything else are still arrays (of strings).
ARRAY_ELEMENT: Final[dict[int, int]] = {
    1000: BOOL,
    1001: BYTEA,
    1005: INT2,
    1007: INT4,
    1016: INT8,
    1009: TEXT,
    1015: VARCHAR,
    1014: 1042,  # bpchar
    1002: 18,  # char
    1003: 19,  # name
    1028: OID,
    199: JSON,
    3807: JSONB,
    1021: FLOAT4,
    1022: FLOAT8,
    1231: NUMERIC,
    1182: DATE,
    1183: TIME,
    1115: TIMESTAMP,
    1185: TIMESTAMPTZ,
    1270: TIMETZ,
    1187: 1186,  # interval
    2951: 2950,  # uuid
    1041: 869,  # inet
    651: 650,  # cidr
    1040: 829,  # macaddr
    791: 790,  # money
}


def as_string(text: str) -> str:
    return encode_json_string(text)


def as_raw_json(text: str) -> str:
    return text


def as_bool(text: str) -> str:
    return "true" if text == "t" else "false"


def as_number(text: str) -> str:
    # to_jsonb keeps a number only if its text is a valid JSON number: NaN and the
    # infinities become strings.
    if text[-1] in "0123456789":
        return text
    return encode_json_string(text)


def _xsd_offset(text: str) -> str:
    # ISO output writes a whole-hour offset as "+05"; to_jsonb writes "+05:00".
    if len(text) >= 3 and text[-3] in "+-" and text[-2:].isdigit():
        return text + ":00"
    return text


def as_timestamp(text: str) -> str:
    if text[0].isdigit() and not text.endswith(" BC"):
        return encode_json_string(text.replace(" ", "T", 1))
    return encode_json_string(text)  # infinity, -infinity, BC dates: see issue on fidelity


def as_timestamptz(text: str) -> str:
    if text[0].isdigit() and not text.endswith(" BC"):
        return encode_json_string(_xsd_offset(text.replace(" ", "T", 1)))
    return encode_json_string(text)


def as_timetz(text: str) -> str:
    return encode_json_string(_xsd_offset(text))


def parse_array(text: str) -> list[str | None] | list[object]:
    """Split an array's text form into nested lists of element texts (None for NULL).

    Follows ReadArrayStr's rules: optional ``[lo:hi]=`` dimension decoration, braces for
    each dimension, elements separated by commas, double quotes with backslash escapes,
    unquoted ``NULL`` (any case) is SQL NULL.
    """
    pos = 0
    if text.startswith("["):
        pos = text.index("=") + 1
    stack: list[list[object]] = []
    result: list[object] = []
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch == "{":
            new: list[object] = []
            if stack:
                stack[-1].append(new)
            else:
                result = new
            stack.append(new)
            pos += 1
        elif ch == "}":
            stack.pop()
            pos += 1
        elif ch == "," or ch.isspace():
            pos += 1
        elif ch == '"':
            pos += 1
            chars = []
            while text[pos] != '"':
                if text[pos] == "\\":
                    pos += 1
                chars.append(text[pos])
                pos += 1
            pos += 1
            stack[-1].append("".join(chars))
        else:
            start = pos
            while pos < n and text[pos] not in ",}":
                pos += 1
            token = text[start:pos].strip()
            stack[-1].append(None if token.upper() == "NULL" else token)
    return result


def array_converter(element: JsonConverter) -> JsonConverter:
    def render(items: object) -> str:
        if isinstance(items, list):
            return "[" + ",".join(render(item) for item in items) + "]"
        if items is None:
            return "null"
        assert isinstance(items, str)
        return element(items)

    def convert(text: str) -> str:
        return render(parse_array(text))

    return convert


def scalar_converter(type_oid: int) -> JsonConverter:
    if type_oid in _NUMBER_TYPES:
        return as_number
    if type_oid == BOOL:
        return as_bool
    if type_oid in (JSON, JSONB):
        return as_raw_json
    if type_oid == TIMESTAMP:
        return as_timestamp
    if type_oid == TIMESTAMPTZ:
        return as_timestamptz
    if type_oid == TIMETZ:
        return as_timetz
    return as_string


def converter_for(type_oid: int) -> JsonConverter:
    """The converter for a column of this type; unknown types render as their text."""
    element = ARRAY_ELEMENT.get(type_oid)
    if element is not None:
        return array_converter(scalar_converter(element))
    return scalar_converter(type_oid)
