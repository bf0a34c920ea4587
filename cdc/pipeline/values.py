"""Column values as JSON text, the way PostgreSQL's ``to_jsonb()`` renders them.

pgoutput sends each column in its type's text output form. The records store ``old``/``new``
as jsonb that must equal ``to_jsonb(row)``, so each type OID gets a converter from that text
to a JSON fragment. The converters return JSON *text* (not Python objects): the fragments are
concatenated into the row's JSON document without a parse/serialise round trip, and numerics
keep every digit because they are never turned into floats.

Session settings matter: the replication session runs with ``DateStyle=ISO`` and
``TimeZone=UTC`` (see cdc.pipeline.stream), so date/time text is ISO and the conversion to the
XSD-style that ``to_jsonb`` uses is a fixed rewrite.

Types of extensions (and any type created in the database) follow ``to_jsonb``'s own rules
(``json_categorize_type`` in PostgreSQL): look through domains to the base type; an array
renders element by element, a composite field by field; any other type with a cast to
``json`` (not ``jsonb``) made by a function (``pg_cast.castmethod = 'f'``) renders as that
cast's result; every other type renders as its text output, a JSON string. The catalog says
which case a type is in (``sql/type_info.sql``: :attr:`TypeInfo.json_cast`):

* ``hstore`` (its cast is ``hstore_to_json``) is rendered here, from its text output
  (:func:`as_hstore`): the format is simple and fully specified by ``hstore_out``.
* Any other cast (PostGIS ``geometry``'s GeoJSON, a user's own cast) runs only in the server:
  its result is never guessed here. Such values are rendered by the source itself,
  ``to_jsonb(value::type)::text``, in one round trip for a batch of changes, before those
  changes are mapped (``cdc.pipeline.catalog.Catalog.render``); their converter only looks the
  rendering up (:meth:`TypeRegistry.renderings`). A column holds such values when its type,
  through domains, arrays and composite fields, reaches such a cast; the whole column value is
  rendered by the server then (an array of geometry is cast as ``geometry[]``).

A cast-rendered value's fragment is exactly ``to_jsonb(value)::text``: jsonb's own text (keys
in jsonb order, ``", "`` and ``": "`` separators, numbers as jsonb prints them), whether the
daemon or the server made it.

**The documents are built in jsonb's own text form** (what ``jsonb::text`` prints), so that the
text the daemon sends is byte for byte the text PostgreSQL gives back for the stored value: the
hash chain is computed by the daemon over that text (cdc.store.chain) and recomputed by ``cdc
verify-chain`` from ``::text`` of what is stored. jsonb's form, as ``JsonbToCString`` writes it:

* object keys ordered by their length in UTF-8 bytes, then bytewise (:func:`jsonb_key_order`),
  each key once (the last one wins); ``", "`` between members and elements, ``": "`` after a
  key; no other whitespace;
* numbers as ``numeric_out`` prints the parsed numeric: no exponent, every digit and trailing
  zero kept, negative zero as zero (:func:`jsonb_number`): ``1e5`` -> ``100000``,
  ``1.000`` -> ``1.000``, ``-0.0`` -> ``0.0``;
* strings escaped as ``escape_json`` does: ``\\"`` ``\\\\`` ``\\b \\f \\n \\r \\t`` and
  ``\\u00xx`` (lowercase hex) for the other control characters, everything else as is.

Column texts that are already in that form pass through (integers, numerics, a jsonb column's
``jsonb_out`` text); a float's shortest text (``1e+100``, ``-0``) and a json column's text (the
user's own spacing, key order and duplicates) are rewritten.
"""

from __future__ import annotations

import json
import json.encoder
import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from cdc.pipeline.values_text import (
    JsonConverter,
    array_converter,
    as_hstore,
    composite_converter,
    encode_json_string,
    jsonb_key_order,
    parse_array,
    parse_composite,
    parse_hstore,
)

# The text forms' parsers and converters live in cdc.pipeline.values_text; importers find them
# here as before.
__all__ = [
    "ARRAY_ELEMENT",
    "BOOL",
    "BOX",
    "BYTEA",
    "CAST_HSTORE",
    "CAST_NONE",
    "CAST_SERVER",
    "DATE",
    "FIRST_NORMAL_OID",
    "FLOAT4",
    "FLOAT8",
    "INT2",
    "INT4",
    "INT8",
    "JSON",
    "JSONB",
    "NUMERIC",
    "OID",
    "TEXT",
    "TIME",
    "TIMESTAMP",
    "TIMESTAMPTZ",
    "TIMETZ",
    "VARCHAR",
    "JsonConverter",
    "TypeInfo",
    "TypeRegistry",
    "array_converter",
    "as_bool",
    "as_float",
    "as_hstore",
    "as_json",
    "as_number",
    "as_raw_json",
    "as_string",
    "as_timestamp",
    "as_timestamptz",
    "composite_converter",
    "converter_for",
    "encode_json_string",
    "jsonb_key_order",
    "jsonb_number",
    "jsonb_text",
    "parse_array",
    "parse_composite",
    "parse_hstore",
    "scalar_converter",
]

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
BOX = 603  # the one built-in type whose arrays separate elements with ';'
FLOAT8 = 701
VARCHAR = 1043
DATE = 1082
TIME = 1083
TIMESTAMP = 1114
TIMESTAMPTZ = 1184
TIMETZ = 1266
NUMERIC = 1700
JSONB = 3802

# numeric_out and the integer types already print jsonb's number form; floats may not.
_NUMBER_TYPES = frozenset({INT2, INT4, INT8, NUMERIC})
_FLOAT_TYPES = frozenset({FLOAT4, FLOAT8})

# Every built-in array type (pg_type, OID < 10000, stable across versions) -> its element type.
# Elements whose type has no converter of its own render as strings, as to_jsonb does.
# fmt: off
ARRAY_ELEMENT: Final[dict[int, int]] = {
    22: 21, 30: 26, 143: 142, 199: 114, 210: 71, 270: 75, 271: 5069, 272: 81, 273: 83, 629: 628,
    651: 650, 719: 718, 775: 774, 791: 790, 1000: 16, 1001: 17, 1002: 18, 1003: 19, 1005: 21,
    1006: 22, 1007: 23, 1008: 24, 1009: 25, 1010: 27, 1011: 28, 1012: 29, 1013: 30, 1014: 1042,
    1015: 1043, 1016: 20, 1017: 600, 1018: 601, 1019: 602, 1020: 603, 1021: 700, 1022: 701,
    1027: 604, 1028: 26, 1034: 1033, 1040: 829, 1041: 869, 1115: 1114, 1182: 1082, 1183: 1083,
    1185: 1184, 1187: 1186, 1231: 1700, 1263: 2275, 1270: 1266, 1561: 1560, 1563: 1562,
    2201: 1790, 2207: 2202, 2208: 2203, 2209: 2204, 2210: 2205, 2211: 2206, 2949: 2970,
    2951: 2950, 3221: 3220, 3643: 3614, 3644: 3642, 3645: 3615, 3735: 3734, 3770: 3769,
    3807: 3802, 3905: 3904, 3907: 3906, 3909: 3908, 3911: 3910, 3913: 3912, 3927: 3926,
    4073: 4072, 4090: 4089, 4097: 4096, 4192: 4191, 5039: 5038, 6150: 4451, 6151: 4532,
    6152: 4533, 6153: 4534, 6155: 4535, 6157: 4536,
}
# fmt: on


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


def jsonb_number(text: str) -> str:
    """A JSON number's text as jsonb prints it: numeric_in then numeric_out (no exponent, the
    scale it implies kept, zero never negative)."""
    number = Decimal(text)
    out = format(number, "f")
    if out[0] == "-" and not number:
        return out[1:]
    return out


def as_float(text: str) -> str:
    # float4/float8 print their shortest form ("1e+100", "1.5e-07", "-0"); to_jsonb stores the
    # numeric that text parses to, which prints without an exponent.
    if text[-1] not in "0123456789":
        return encode_json_string(text)  # NaN, Infinity, -Infinity: strings, as to_jsonb
    if "e" in text or text[:2] == "-0":
        return jsonb_number(text)
    return text


def jsonb_text(value: object) -> str:
    """A Python value (from ``json.loads``, ints, floats, Decimals, nested dicts and lists) as
    jsonb's text; anything else as the string of its ``str()``."""
    if isinstance(value, str):
        return encode_json_string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return encode_json_string(str(value))  # not a JSON number; to_jsonb writes a string
        return jsonb_number(repr(value))
    if isinstance(value, Decimal):
        return jsonb_number(str(value)) if value.is_finite() else encode_json_string(str(value))
    if isinstance(value, dict):
        items = sorted(
            ((str(k), v) for k, v in value.items()), key=lambda kv: jsonb_key_order(kv[0])
        )
        return "{" + ", ".join(encode_json_string(k) + ": " + jsonb_text(v) for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(jsonb_text(item) for item in value) + "]"
    return encode_json_string(str(value))


def as_json(text: str) -> str:
    """A json column's text (the user's spacing, key order, duplicate keys) in jsonb's form."""
    try:
        return jsonb_text(json.loads(text, parse_float=Decimal))
    except ValueError:
        return text  # not JSON after all: stored as sent, the sink's jsonb input judges it


def _xsd_offset(text: str) -> str:
    # ISO output writes a whole-hour offset as "+05"; to_jsonb writes "+05:00".
    if len(text) >= 3 and text[-3] in "+-" and text[-2:].isdigit():
        return text + ":00"
    return text


def as_timestamp(text: str) -> str:
    # to_jsonb writes "T" between date and time; "infinity" and a " BC" suffix stay as they are.
    if text[4:5] == "-" and text[10:11] == " " and text[-1] != "C":
        # The common case, "2024-05-06 07:08:09.123": digits and separators, nothing to escape.
        return '"' + text[:10] + "T" + text[11:] + '"'
    if not text[0].isdigit():
        return encode_json_string(text)
    return encode_json_string(text.replace(" ", "T", 1))


def as_timestamptz(text: str) -> str:
    if text[-3:] == "+00" and text[4:5] == "-" and text[10:11] == " ":
        # The common case: the stream's session runs with TimeZone=UTC (cdc.pipeline.stream), so a
        # timestamptz reads "2024-05-06 07:08:09.123+00"; to_jsonb writes "...T...+00:00".
        return '"' + text[:10] + "T" + text[11:] + ':00"'
    if not text[0].isdigit():
        return encode_json_string(text)
    if text.endswith(" BC"):
        return encode_json_string(_xsd_offset(text[:-3].replace(" ", "T", 1)) + " BC")
    return encode_json_string(_xsd_offset(text.replace(" ", "T", 1)))


def scalar_converter(type_oid: int) -> JsonConverter:
    if type_oid in _NUMBER_TYPES:
        return as_number
    if type_oid in _FLOAT_TYPES:
        return as_float
    if type_oid == BOOL:
        return as_bool
    if type_oid == JSONB:
        return as_raw_json  # jsonb_out's text is jsonb's form already
    if type_oid == JSON:
        return as_json
    if type_oid == TIMESTAMP:
        return as_timestamp
    if type_oid == TIMESTAMPTZ:
        return as_timestamptz
    return as_string


def converter_for(type_oid: int) -> JsonConverter:
    """The converter for a column of this type; unknown types render as their text."""
    element = ARRAY_ELEMENT.get(type_oid)
    if element is not None:
        return array_converter(scalar_converter(element), ";" if element == BOX else ",")
    return scalar_converter(type_oid)


# TypeInfo.json_cast: how to_jsonb renders a type that is not an array, composite or domain.
CAST_NONE = ""  # no cast to json: its text output, a JSON string
CAST_HSTORE = "hstore"  # hstore's hstore_to_json: rendered here (as_hstore)
CAST_SERVER = "server"  # any other cast function: rendered by the server, never guessed


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """What the catalog says about a type that is not built in (pg_type)."""

    oid: int
    kind: str  # typtype: b base, c composite, d domain, e enum, r range, m multirange
    element_oid: int = 0  # arrays: typelem
    base_oid: int = 0  # domains: typbasetype
    fields: tuple[tuple[str, int], ...] = ()  # composites: (attname, atttypid) in order
    json_cast: str = CAST_NONE  # CAST_NONE, CAST_HSTORE or CAST_SERVER (its cast to json)
    name: tuple[str, str] = ("", "")  # (schema, type name): what a value's text is cast to
    delimiter: str = ","  # arrays: the element type's typdelim


class TypeRegistry:
    """Converters for every type OID: built-in ones from the tables above, user-defined ones
    (domains, composites, arrays of them, enums, extension types) from :class:`TypeInfo` the
    daemon looked up in the catalog when a Relation message named them. Pure: lookups, and the
    server's renderings of cast-rendered values, are fetched elsewhere (cdc.pipeline.catalog)."""

    def __init__(self) -> None:
        self._info: dict[int, TypeInfo] = {}
        self._converters: dict[int, JsonConverter] = {}
        self._server_types: dict[int, TypeInfo | None] = {}
        # target type OID -> {text output: to_jsonb text}, filled before the changes that
        # hold such values are mapped, emptied after (see renderings())
        self._renderings: dict[int, dict[str, str]] = {}
        # True once a type whose values only the server can render was added: the daemon
        # then batches changes to render their values (tables without pay nothing)
        self.server_rendered = False

    def add(self, info: TypeInfo) -> None:
        self._info[info.oid] = info
        self._converters.clear()  # a composite or array may depend on it
        self._server_types.clear()
        if info.json_cast == CAST_SERVER:
            self.server_rendered = True

    def known(self, type_oid: int) -> bool:
        return type_oid < FIRST_NORMAL_OID or type_oid in self._info

    def missing(self, type_oids: Iterable[int]) -> set[int]:
        """OIDs whose catalog entries are still needed, including those they refer to."""
        wanted: set[int] = set()
        for oid in type_oids:
            self._walk(oid, wanted, depth=0)
        return wanted

    def _walk(self, oid: int, wanted: set[int], depth: int) -> None:
        if depth > 32 or oid in wanted:
            return
        if oid < FIRST_NORMAL_OID:
            return
        info = self._info.get(oid)
        if info is None:
            wanted.add(oid)
            return
        for child in (info.element_oid, info.base_oid, *(t for _, t in info.fields)):
            if child:
                self._walk(child, wanted, depth + 1)

    def converter(self, type_oid: int) -> JsonConverter:
        converter = self._converters.get(type_oid)
        if converter is None:
            converter = self._build(type_oid, depth=0)
            self._converters[type_oid] = converter
        return converter

    def _build(self, type_oid: int, depth: int) -> JsonConverter:
        if type_oid < FIRST_NORMAL_OID:
            return converter_for(type_oid)
        info = self._info.get(type_oid)
        if info is None or depth > 32:
            return as_string  # unknown: its text form, as to_jsonb renders most types
        if info.kind == "d":  # to_jsonb looks through domains first
            return self._build(info.base_oid, depth + 1)
        if self._needs_server(type_oid, 0):
            return self._looked_up(info)
        if info.element_oid:
            return array_converter(self._build(info.element_oid, depth + 1), info.delimiter)
        if info.kind == "c":
            return composite_converter(
                [(name, self._build(oid, depth + 1)) for name, oid in info.fields]
            )
        if info.json_cast == CAST_HSTORE:
            return as_hstore
        return as_string  # enums, ranges, multirange, base types without a cast to json

    def _needs_server(self, type_oid: int, depth: int) -> bool:
        """Whether a value of this type holds a part only the server can render."""
        info = self._info.get(type_oid)
        if info is None or depth > 32:
            return False
        if info.kind == "d":
            return self._needs_server(info.base_oid, depth + 1)
        if info.element_oid:
            return self._needs_server(info.element_oid, depth + 1)
        if info.kind == "c":
            return any(self._needs_server(oid, depth + 1) for _, oid in info.fields)
        return info.json_cast == CAST_SERVER

    def server_type(self, type_oid: int) -> TypeInfo | None:
        """The type the server renders a column's values as (its domains looked through), or
        None when the daemon renders them itself."""
        if type_oid in self._server_types:
            return self._server_types[type_oid]
        oid = type_oid
        info = self._info.get(oid)
        for _ in range(32):
            if info is None or info.kind != "d":
                break
            oid = info.base_oid
            info = self._info.get(oid)
        found = info if info is not None and self._needs_server(oid, 0) else None
        self._server_types[type_oid] = found
        return found

    def server_columns(self, type_oids: Iterable[int]) -> tuple[tuple[int, TypeInfo], ...]:
        """(position, type rendered by the server) of the columns whose values the server
        renders; empty for most tables."""
        return tuple(
            (position, target)
            for position, oid in enumerate(type_oids)
            if (target := self.server_type(oid)) is not None
        )

    def renderings(self, type_oid: int) -> dict[str, str]:
        """The server's renderings of values of this (domain-free) type, by text output.
        Whoever renders fills it before the changes are mapped and calls
        :meth:`forget_renderings` after; the converter reads it."""
        renderings = self._renderings.get(type_oid)
        if renderings is None:
            renderings = self._renderings[type_oid] = {}
        return renderings

    def forget_renderings(self) -> None:
        for renderings in self._renderings.values():
            renderings.clear()  # in place: converters hold these dicts

    def _looked_up(self, info: TypeInfo) -> JsonConverter:
        renderings = self.renderings(info.oid)
        schema, name = info.name

        def convert(text: str) -> str:
            try:
                return renderings[text]
            except KeyError:
                # A bug, not bad input: the batch was mapped before it was rendered.
                raise LookupError(
                    f"a value of type {schema}.{name} was not rendered by the server "
                    "before it was mapped"
                ) from None

        return convert


# OIDs below this are assigned by initdb (built-in objects); user types are above.
FIRST_NORMAL_OID = 16384
