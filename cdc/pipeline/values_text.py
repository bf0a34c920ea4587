"""The text forms of composite values, as JSON: arrays (``array_out``), row values
(``record_out``) and hstore (``hstore_out``) split into their elements and rendered as
``to_jsonb`` renders them, in jsonb's text form (cdc.pipeline.values, which builds a column's
converter from these).
"""

from __future__ import annotations

import json.encoder
from collections.abc import Callable
from typing import Final

JsonConverter = Callable[[str], str]

# C-accelerated JSON string encoder used by json.dumps(ensure_ascii=False): quotes and escapes.
encode_json_string: Final[Callable[[str], str]] = json.encoder.encode_basestring


def jsonb_key_order(key: str) -> tuple[int, bytes]:
    """jsonb's order of object keys: shorter (in UTF-8 bytes) first, then bytewise."""
    encoded = key.encode()
    return len(encoded), encoded


# array_out quotes an element that holds one of these (array_isspace), and skips them
# around unquoted elements on input; no other whitespace is special.
_ARRAY_SPACE = frozenset(" \t\n\r\v\f")


def parse_array(text: str, delimiter: str = ",") -> list[str | None] | list[object]:
    """Split an array's text form into nested lists of element texts (None for NULL).

    Follows ReadArrayStr's rules: optional ``[lo:hi]=`` dimension decoration, braces for
    each dimension, elements separated by the element type's delimiter (``pg_type.typdelim``:
    a comma for all but ``box``'s ``;`` and a few extensions', PostGIS's ``:``), double quotes
    with backslash escapes, unquoted ``NULL`` (any case) is SQL NULL.
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
        elif ch == delimiter or ch in _ARRAY_SPACE:
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
            while pos < n and text[pos] != delimiter and text[pos] != "}":
                pos += 1
            token = text[start:pos].strip(" \t\n\r\v\f")
            stack[-1].append(None if token.upper() == "NULL" else token)
    return result


def array_converter(element: JsonConverter, delimiter: str = ",") -> JsonConverter:
    def render(items: object) -> str:
        if isinstance(items, list):
            return "[" + ", ".join(render(item) for item in items) + "]"
        if items is None:
            return "null"
        assert isinstance(items, str)
        return element(items)

    def convert(text: str) -> str:
        return render(parse_array(text, delimiter))

    return convert


def parse_composite(text: str) -> list[str | None]:
    """Split a row value's text form ``(a,"b c",,"x""y")`` into field texts (None for NULL).

    record_out quotes a field when needed and doubles quotes and backslashes inside quotes;
    an empty unquoted field is NULL, an empty quoted one is the empty string.
    """
    fields: list[str | None] = []
    pos = 1  # after "("
    end = len(text) - 1  # the closing ")"
    while pos <= end:
        if text[pos] in ",)":
            fields.append(None)
            pos += 1
            continue
        chars: list[str] = []
        while pos < end and text[pos] != ",":
            ch = text[pos]
            if ch == '"':
                pos += 1
                while True:
                    ch = text[pos]
                    if ch == '"':
                        if text[pos + 1] == '"':
                            chars.append('"')
                            pos += 2
                            continue
                        pos += 1
                        break
                    if ch == "\\":
                        pos += 1
                        ch = text[pos]
                    chars.append(ch)
                    pos += 1
            else:
                if ch == "\\":
                    pos += 1
                    ch = text[pos]
                chars.append(ch)
                pos += 1
        fields.append("".join(chars))
        pos += 1  # the comma or the closing parenthesis
    return fields


def composite_converter(fields: list[tuple[str, JsonConverter]]) -> JsonConverter:
    keys = [encode_json_string(name) + ": " for name, _ in fields]
    converters = [converter for _, converter in fields]
    # to_jsonb's object: the fields in jsonb's key order
    order = sorted(range(len(fields)), key=lambda i: jsonb_key_order(fields[i][0]))

    def convert(text: str) -> str:
        values = parse_composite(text)
        count = len(values)
        parts = []
        for i in order:
            if i >= count:
                continue  # a field the text does not have (the type changed since)
            value = values[i]
            parts.append(keys[i] + ("null" if value is None else converters[i](value)))
        return "{" + ", ".join(parts) + "}"

    return convert


def parse_hstore(text: str) -> list[tuple[str, str | None]]:
    """Split hstore's text output into its (key, value) pairs, in order (None for NULL).

    ``hstore_out`` writes every pair as ``"key"=>"value"`` (``NULL`` unquoted for a NULL
    value), pairs separated by ``", "``, the empty hstore as the empty string; inside the
    quotes it escapes ``"`` and ``\\`` with a backslash and nothing else. The pairs come in
    hstore's own order: keys sorted by length, then bytes, the order jsonb keeps its keys in.
    Anything else is not hstore output: :class:`ValueError`.
    """
    pairs: list[tuple[str, str | None]] = []
    pos = 0
    end = len(text)
    try:
        while pos < end:
            key, pos = _hstore_quoted(text, pos)
            if text[pos : pos + 2] != "=>":
                raise ValueError("expected '=>'")
            pos += 2
            value: str | None
            if text[pos] == "N" and text[pos : pos + 4] == "NULL":
                value = None
                pos += 4
            else:
                value, pos = _hstore_quoted(text, pos)
            pairs.append((key, value))
            if pos < end:
                if text[pos : pos + 2] != ", ":
                    raise ValueError("expected ', '")
                pos += 2
    except IndexError:
        raise ValueError(f"hstore text ends early at offset {pos}") from None
    except ValueError as exc:
        raise ValueError(f"not hstore output at offset {pos}: {exc}") from None
    return pairs


def _hstore_quoted(text: str, pos: int) -> tuple[str, int]:
    """The string quoted at ``text[pos]`` and the offset after its closing quote."""
    if text[pos] != '"':
        raise ValueError("expected '\"'")
    start = pos + 1
    close = text.index('"', start)
    chunk = text[start:close]
    if "\\" not in chunk:  # the common case: nothing escaped, that quote closes it
        return chunk, close + 1
    chars: list[str] = []
    pos = start
    while True:
        ch = text[pos]
        if ch == "\\":
            chars.append(text[pos + 1])
            pos += 2
        elif ch == '"':
            return "".join(chars), pos + 1
        else:
            chars.append(ch)
            pos += 1


def as_hstore(text: str) -> str:
    """hstore as its cast to json (``hstore_to_json``) renders it, in jsonb's text form:
    ``{"a": "1", "b": null}``, every value a string or null, keys in hstore's order (which is
    jsonb's), escaped as jsonb escapes strings (``escape_json``, the same as
    :data:`encode_json_string`)."""
    parts = []
    for key, value in parse_hstore(text):
        rendered = "null" if value is None else encode_json_string(value)
        parts.append(encode_json_string(key) + ": " + rendered)
    return "{" + ", ".join(parts) + "}"
