"""The compiled core (cdc/pipeline/_core.pyx) and the pure Python it mirrors give identical results.

Both implementations are called side by side in one process: the compiled
``cdc.pipeline._core`` and the references (``pgoutput.fast.fast_decode`` and ``_fast_tuple``,
``documents._py_row_json`` and ``_py_update_json``, ``changes._py_has_unchanged_toast``).
Inputs: the captured pgoutput vectors, hypothesis-made messages, tuples, rows and arbitrary
bytes, and whole records mapped through ActivityMapper with each implementation.
Then the decoder, change and mapping suites run again on the pure implementation alone
(``CDC_PURE_PYTHON=1``), as CI runs them on the compiled one.

The compiled module must exist here: bootstrap builds it (gcc + Python headers), and a missing
one fails these tests rather than skipping them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cdc.pipeline.activity
import cdc.pipeline.changes
import cdc.pipeline.documents
import cdc.pipeline.loop
import cdc.pipeline.pgoutput.decode
import cdc.pipeline.pgoutput.fast
import cdc.pipeline.values
from cdc.config import settings_from_mapping
from cdc.errors import DecodeError
from cdc.lsn import format_lsn
from cdc.pipeline import core
from cdc.pipeline.activity import ActivityMapper, ActivityRecord, TableMapper
from cdc.pipeline.changes import (
    ChangeAssembler,
    RowChange,
    TransactionEnd,
    TransactionInfo,
    relation_info,
)
from cdc.pipeline.copy_lines import (
    ChainHead,
    _py_encode_binary_rows,
    _py_encode_chained_rows,
    encode_binary_rows,
    encode_chained_rows,
)
from cdc.pipeline.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    ColumnValue,
    Commit,
    Delete,
    Insert,
    Message,
    Origin,
    PgOutputMessage,
    StreamCommit,
    StreamStart,
    StreamStop,
    TupleData,
    Update,
    decode_message,
)
from cdc.pipeline.spill import SpillStore
from cdc.pipeline.values import (
    BOOL,
    FLOAT8,
    INT4,
    INT8,
    JSONB,
    NUMERIC,
    TEXT,
    TIMESTAMP,
    TIMESTAMPTZ,
    TypeRegistry,
    encode_json_string,
)
from tests.unit.messages import relation
from tests.unit.pgoutput_encoder import encode, encode_tuple
from tests.unit.test_pgoutput_properties import STREAMABLE, messages

try:
    from cdc.pipeline._core import (  # type: ignore[import-not-found]
        decode_fast,
        decode_tuple,
        has_unchanged_toast,
        row_json,
        update_json,
    )
except ImportError as exc:  # a failure, not a skip: CI must test the compiled core
    raise ImportError(
        "the compiled core (cdc/pipeline/_core.pyx) is not built here; run "
        "scripts/bootstrap.sh or .venv/bin/pip install -e '.[test,bench]' (needs gcc)"
    ) from exc

REPO = Path(__file__).resolve().parents[2]
VECTORS = json.loads((REPO / "tests" / "vectors" / "pgoutput_pg15.json").read_text())

py_tuple = cdc.pipeline.pgoutput.fast._fast_tuple
py_fast = cdc.pipeline.pgoutput.fast.fast_decode
py_row_json = cdc.pipeline.documents._py_row_json
py_update_json = cdc.pipeline.documents._py_update_json


def test_the_compiled_core_is_the_one_in_use() -> None:
    assert core.IMPLEMENTATION == "compiled" and core.mapping is not None
    assert ActivityMapper.map is core.mapping.map_change
    assert ChangeAssembler.feed_quiet is not ChangeAssembler._py_feed_quiet
    assert cdc.pipeline.pgoutput.decode._fast is decode_fast
    assert cdc.pipeline.activity._row_json is row_json


def outcome(function: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """What a call returned, or the kind of error it raised (the decoder treats every error of
    its fast path the same way: it re-reads the message with the checked reader)."""
    try:
        return ("ok", function(*args))
    except (ValueError, IndexError, TypeError, AssertionError, AttributeError, KeyError):
        return ("error", None)
    except Exception as exc:  # struct.error, _FastPathError: the fast path gives up
        return ("error", type(exc).__name__)


# --- TupleData --------------------------------------------------------------------------------

column_values = st.one_of(
    st.none(),
    st.just(UNCHANGED_TOAST),
    st.text(),
    st.binary(max_size=40),
)


@given(st.lists(column_values, max_size=40), st.binary(max_size=8), st.binary(max_size=4))
def test_decode_tuple_reads_every_tuple_as_the_reference_does(
    values: list[ColumnValue], before: bytes, after: bytes
) -> None:
    data = before + encode_tuple(tuple(values)) + after
    compiled = decode_tuple(data, len(before))
    assert compiled == py_tuple(data, len(before))
    assert compiled == (tuple(values), len(data) - len(after))
    assert all(a is b for a, b in zip(compiled[0], values, strict=True) if b is UNCHANGED_TOAST)


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=8))
def test_decode_tuple_on_arbitrary_bytes_fails_or_agrees(data: bytes, offset: int) -> None:
    compiled = outcome(decode_tuple, data, offset)
    reference = outcome(py_tuple, data, offset)
    if reference[0] == "ok" and compiled[0] == "ok":
        assert compiled == reference
    else:
        # The reference reads a short slice where the compiled one refuses a length past the
        # end: both make the decoder fall back to the checked reader, which decides.
        assert compiled[0] == "error" or reference[0] == "error"


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_every_captured_message_decodes_identically(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    compiled = outcome(decode_fast, data, vector["in_stream"])
    assert compiled == outcome(py_fast, data, vector["in_stream"])
    if compiled[1] is not None:
        assert compiled[1] == decode_message(data, in_stream=vector["in_stream"])


@settings(max_examples=1000)
@given(messages, st.booleans(), st.integers(min_value=0, max_value=3))
def test_decode_fast_reads_every_message_as_the_reference_does(
    message: PgOutputMessage, in_stream: bool, cut: int
) -> None:
    if isinstance(message, STREAMABLE):
        in_stream = message.xid is not None
    data = encode(message)
    assert outcome(decode_fast, data, in_stream) == outcome(py_fast, data, in_stream)
    truncated = data[: max(0, len(data) - cut)]
    compiled = outcome(decode_fast, truncated, in_stream)
    reference = outcome(py_fast, truncated, in_stream)
    assert compiled == reference or "error" in (compiled[0], reference[0])


@settings(max_examples=1000)
@given(
    st.integers(-(2**63), 2**63 - 1) | st.integers(-63082281600000001, 252455616000000000),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1),
)
def test_a_commit_time_is_read_as_the_reference_reads_it(micros: int, lsn: int, xid: int) -> None:
    """Begin and Commit: the compiled calendar arithmetic gives pg_time's datetime, or the
    same error outside datetime's range (years 1 to 9999)."""
    begin = b"B" + struct.pack("!QqI", lsn, micros, xid)
    commit = b"C\x00" + struct.pack("!QQq", lsn, lsn, micros)
    for data in (begin, commit):
        assert outcome(decode_fast, data, False) == outcome(py_fast, data, False)


@given(st.binary(max_size=120), st.booleans())
def test_decode_fast_on_arbitrary_bytes_fails_or_agrees(data: bytes, in_stream: bool) -> None:
    compiled = outcome(decode_fast, data, in_stream)
    reference = outcome(py_fast, data, in_stream)
    assert compiled == reference or "error" in (compiled[0], reference[0])


def _decoded_by(decoder: Any, payloads: list[bytes | bytearray]) -> list[tuple[Any, bool]]:
    """Each payload's message (or its DecodeError's text) and ``in_stream`` after it."""
    seen: list[tuple[Any, bool]] = []
    for payload in payloads:
        try:
            seen.append((decoder.decode(payload), decoder.in_stream))
        except DecodeError as exc:
            seen.append((str(exc), decoder.in_stream))
    return seen


@settings(max_examples=500)
@given(
    st.lists(
        st.one_of(
            messages.map(encode),
            st.sampled_from([b"S\x00\x00\x00\x07\x01", b"E", b"I", b"C\x00"]),
            st.binary(max_size=30),
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_the_compiled_decoder_reads_a_stream_as_the_reference_does(
    payloads: list[bytes], as_bytearray: bool
) -> None:
    """Stream Start (S) and Stop (E) switch ``in_stream`` for what follows; a payload that fails
    leaves it as it was; a bytearray is read as its bytes."""
    fed: list[bytes | bytearray] = [bytearray(p) if as_bytearray else p for p in payloads]
    compiled = cdc.pipeline.pgoutput.decode.Decoder()
    assert type(compiled) is not cdc.pipeline.pgoutput.decode.PyDecoder
    reference = cdc.pipeline.pgoutput.decode.PyDecoder()
    assert _decoded_by(compiled, fed) == _decoded_by(reference, fed)


@given(messages)
def test_messages_the_compiled_core_builds_are_ordinary_frozen_dataclasses(
    message: PgOutputMessage,
) -> None:
    in_stream = isinstance(message, STREAMABLE) and message.xid is not None
    built = decode_fast(encode(message), in_stream)
    if built is None:
        return  # not a kind the fast path reads
    reference = py_fast(encode(message), in_stream)
    assert type(built) is type(message)
    assert built == message and hash(built) == hash(message)
    assert pickle.loads(pickle.dumps(built)) == message
    assert copy.deepcopy(built) == message
    assert repr(built) == repr(reference)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, dataclasses.fields(built)[0].name, 1)


@given(st.lists(column_values, max_size=30).map(tuple))
def test_has_unchanged_toast_agrees_with_in(values: TupleData) -> None:
    assert has_unchanged_toast(values) is (UNCHANGED_TOAST in values)


# --- rows as JSON ------------------------------------------------------------------------------

TYPES = (TEXT, INT4, INT8, NUMERIC, FLOAT8, BOOL, JSONB, TIMESTAMP, TIMESTAMPTZ, 1009, 1007)

digits = st.text("0123456789", min_size=1, max_size=30)
# Texts shaped like each type's output, and anything at all (converters see what they see).
typed_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(max_codepoint=0x3F)),  # control characters, quotes, digits
    digits,
    st.builds(lambda a, b: f"-{a}.{b}", digits, digits),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "t", "f", "1e5", "-0", "1.000"]),
    st.builds(
        lambda d, t, z: f"{d} {t}{z}",
        st.sampled_from(["2024-05-06", "0001-01-01", "2024-02-29"]),
        st.sampled_from(["07:08:09", "07:08:09.123456", "23:59:60"]),
        st.sampled_from(["", "+00", "+05", "-03:30", "+00 BC", " BC", "+0"]),
    ),
    st.sampled_from(["infinity", "-infinity", '{"a": [1, 2]}', "{1,2,NULL}", '{"x y",z}']),
)
row_values = st.one_of(st.none(), typed_text, st.binary(max_size=8))


@st.composite
def tables(draw: st.DrawFn) -> TableMapper:
    types = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=12))
    columns = [(f'c{i}\u00e9"{i}', oid) for i, oid in enumerate(types)]
    redacted = draw(st.sets(st.integers(0, len(columns) - 1)))
    info = relation_info(relation(16500, "things", columns), lambda oid, s, t: None)
    settings_ = settings_from_mapping(
        {
            "source": {"dsn": "host=db"},
            "tables": [
                {
                    "name": "public.things",
                    "redact_columns": [columns[i][0] for i in sorted(redacted)],
                }
            ],
        },
        env={},
    )
    return ActivityMapper(settings_, types=TypeRegistry()).table_mapper(info)


@settings(max_examples=300)
@given(tables(), st.data())
def test_row_json_renders_every_row_as_the_reference_does(
    mapper: TableMapper, data: st.DataObject
) -> None:
    width = len(mapper.json_keys)
    values = tuple(data.draw(st.lists(row_values, min_size=width, max_size=width)))
    positions = data.draw(
        st.none() | st.lists(st.integers(0, width - 1), max_size=width).map(tuple)
    )
    args = (mapper.json_keys, mapper.kinds, mapper.converters, values, positions)
    assert outcome(row_json, *args) == outcome(py_row_json, *args)


def test_a_text_column_is_escaped_wherever_its_special_characters_fall() -> None:
    """The compiled escaping tests eight bytes at a time: a quote, a backslash, a control
    character or a multi-byte character at every offset of runs longer than one word."""
    keys, kinds, converters = ('"t": ',), (core.STRING,), (cdc.pipeline.values.as_string,)
    for special in ['"', "\\", "\x00", "\x1f", "\n", " ", "\x7f", "é", "\u2028", "!", "#", "]"]:
        for length in range(0, 26):
            for at in range(length + 1):
                text = "abcdefghijklmnopqrstuvwxyz"[:length]
                text = text[:at] + special + text[at:]
                args = (keys, kinds, converters, (text,), None)
                assert (
                    row_json(*args)
                    == py_row_json(*args)
                    == "{" + keys[0] + encode_json_string(text) + "}"
                )


@settings(max_examples=300)
@given(tables(), st.data())
def test_update_json_renders_every_update_as_the_reference_does(
    mapper: TableMapper, data: st.DataObject
) -> None:
    width = len(mapper.json_keys)
    old = tuple(data.draw(st.lists(row_values, min_size=width, max_size=width)))
    # Half the columns unchanged (the usual update), some unchanged TOAST on both sides.
    new_list: list[ColumnValue] = []
    for value in old:
        choice = data.draw(st.sampled_from(["same", "other", "toast"]))
        new_list.append(
            value
            if choice == "same"
            else UNCHANGED_TOAST
            if choice == "toast"
            else data.draw(row_values)
        )
    new = tuple(new_list)
    old = tuple(
        UNCHANGED_TOAST if n is UNCHANGED_TOAST else o for o, n in zip(old, new, strict=True)
    )
    order = data.draw(st.permutations(range(width)).map(tuple) | st.just(mapper.order))
    args = (mapper.json_keys, mapper.changed_keys, mapper.kinds, mapper.converters, old, new, order)
    assert outcome(update_json, *args) == outcome(py_update_json, *args)


def test_every_builtin_converter_has_a_kind_and_redaction_is_called() -> None:
    assert core.converter_kind(cdc.pipeline.values.as_number) == core.NUMBER
    assert core.converter_kind(encode_json_string) == core.CALL


# --- whole records -----------------------------------------------------------------------------


def _vector_records() -> Iterator[ActivityRecord]:
    """Every captured transaction (one replication session per protocol variant), assembled
    and mapped with the default rules; two-phase ones are left out (the daemon does not
    request them)."""
    settings_ = settings_from_mapping(
        {"source": {"dsn": "host=db"}, "tables": [{"name": "cdc_vectors.all_types"}]}, env={}
    )
    mapper = ActivityMapper(settings_, types=TypeRegistry())
    groups: dict[str, list[dict[str, Any]]] = {}
    for vector in VECTORS:
        groups.setdefault(vector["name"].split("/", 1)[0], []).append(vector)
    for name, vectors in groups.items():
        if name.startswith("v3_two_phase"):
            continue
        relations = [
            decode_message(bytes.fromhex(v["hex"]))
            for v in vectors
            if v["hex"].startswith("52") and not v["in_stream"]
        ]
        spill = SpillStore()
        try:
            assembler = _described(relations, spill)
            for vector in vectors:
                data = bytes.fromhex(vector["hex"])
                message = decode_message(data, in_stream=vector["in_stream"])
                try:
                    changes = list(assembler.feed(message, data))
                except DecodeError:  # a table whose Relation was not captured: next one
                    assembler = _described(relations, spill)
                    continue
                for change in changes:
                    if type(change) is not TransactionEnd:
                        record = mapper.map(change)
                        if record is not None:
                            yield record
        finally:
            spill.close()


def _described(relations: list[PgOutputMessage], spill: SpillStore) -> ChangeAssembler:
    """An assembler that knows every table of the session (some captures begin mid-session)."""
    assembler = ChangeAssembler(lambda oid, s, t: ("id",), spill=spill)
    for message in relations:
        list(assembler.feed(message))
    return assembler


def test_the_captured_transactions_map_to_identical_records() -> None:
    compiled = list(_vector_records())
    activity, changes = cdc.pipeline.activity, cdc.pipeline.changes
    pgoutput = cdc.pipeline.pgoutput.decode
    saved = activity._row_json, activity._update_json, pgoutput._fast, changes._has_unchanged_toast
    saved_map, saved_replay = activity._map_row_change, changes._replay_in_memory
    saved_info, saved_join = changes._info_in_memory, ChangeAssembler.feed_quiet
    changes._info_in_memory = changes._transaction_info
    ChangeAssembler.feed_quiet = ChangeAssembler._py_feed_quiet  # type: ignore[method-assign]
    saved_dispatch = ActivityMapper.map
    ActivityMapper.map = ActivityMapper._py_map  # type: ignore[method-assign]
    activity._row_json, activity._update_json = py_row_json, py_update_json
    activity._map_row_change = ActivityMapper._py_row_change
    changes._replay_in_memory = ChangeAssembler._py_replay_in_memory
    pgoutput._fast = py_fast  # type: ignore[misc]
    changes._has_unchanged_toast = changes._py_has_unchanged_toast
    try:
        reference = list(_vector_records())
    finally:
        (
            activity._row_json,
            activity._update_json,
            pgoutput._fast,  # type: ignore[misc]
            changes._has_unchanged_toast,
        ) = saved
        activity._map_row_change, changes._replay_in_memory = saved_map, saved_replay
        changes._info_in_memory = saved_info
        ChangeAssembler.feed_quiet = saved_join  # type: ignore[method-assign]
        ActivityMapper.map = saved_dispatch  # type: ignore[method-assign]
    assert len(compiled) > 20
    assert compiled == reference


# --- a change joining its open transaction, a Begin opening one (_assembly.pxi feed_quiet) ----

_THINGS = relation(16700, "things", ["id", "note"])
_POOL: list[PgOutputMessage] = [
    _THINGS,
    Begin(0x800, datetime(2026, 12, 4, tzinfo=UTC), 9),
    Begin(0x700, datetime(2026, 12, 3, tzinfo=UTC), 8),  # recorded before a restart at 0x780
    Insert(16700, ("1", "a")),
    Update(16700, ("1", "b"), ("1", "a"), "O"),
    Delete(16700, ("1", None), "K"),
    Insert(16701, ("2", "c")),  # never described: its change fails at the Commit
    Message(True, 0x7F0, "cdc.context", b'{"actor_id": "7"}'),
    Origin(0x10, "replica"),
    Commit(0, 0x800, 0x830, datetime(2026, 12, 4, tzinfo=UTC)),
    StreamStart(31, True),
    Insert(16700, ("3", "d"), xid=31),
    StreamStop(),
    StreamCommit(31, 0, 0x900, 0x930, datetime(2026, 12, 4, tzinfo=UTC)),
]


def _fed_as_the_pipeline_feeds(
    join: Callable[..., bool], messages: list[PgOutputMessage], skip_through: int
) -> list[Any]:
    """Quiet first, else feed (cdc.pipeline.loop.Pipeline.feed): what each message gave."""
    spill = SpillStore()
    assembler = ChangeAssembler(
        lambda oid, s, t: ("id",), skip_through_lsn=skip_through, spill=spill
    )
    seen: list[Any] = []
    try:
        for message in messages:
            payload = encode(message)
            try:
                if join(assembler, message, payload):
                    seen.append("joined")
                    continue
                seen.append(list(assembler.feed(message, payload)))
            except DecodeError as exc:
                seen.append(str(exc))
    finally:
        if assembler._open is not None:  # ended inside a transaction: its overflow file
            assembler._open.close()
        spill.close()
    return seen


@settings(max_examples=400)
@given(
    st.lists(st.sampled_from(_POOL), max_size=16),
    st.sampled_from([1, 2, 10_000]),
    st.sampled_from([0, 0x780]),
)
def test_a_change_joins_its_transaction_as_the_reference_joins_it(
    messages: list[PgOutputMessage], in_memory: int, skip_through: int
) -> None:
    """Inside an open transaction, a stream block, none; past IN_MEMORY_MESSAGES (spilled); a
    Begin opening a transaction, or one recorded before a restart (skipped), or inside
    another, or inside a stream block."""
    saved = cdc.pipeline.changes.IN_MEMORY_MESSAGES
    cdc.pipeline.changes.IN_MEMORY_MESSAGES = in_memory
    try:
        compiled = _fed_as_the_pipeline_feeds(ChangeAssembler.feed_quiet, messages, skip_through)
        reference = _fed_as_the_pipeline_feeds(
            ChangeAssembler._py_feed_quiet, messages, skip_through
        )
    finally:
        cdc.pipeline.changes.IN_MEMORY_MESSAGES = saved
    assert ChangeAssembler.feed_quiet is not ChangeAssembler._py_feed_quiet
    assert compiled == reference


def _run_as_the_driver_runs(
    quiet_run: Callable[..., tuple[int, Any]], frames: list[Any], skip_through: int
) -> list[Any]:
    """One poll's frames as cdc.pipeline.daemon._take goes through them: the quiet run, then
    the payload it stopped at fed (or the frame that is not a payload noted); what each
    step gave."""
    spill = SpillStore()
    assembler = ChangeAssembler(
        lambda oid, s, t: ("id",), skip_through_lsn=skip_through, spill=spill
    )
    decoder = cdc.pipeline.pgoutput.decode.PyDecoder()
    seen: list[Any] = []
    index = 0
    try:
        while index < len(frames):
            try:
                index, message = quiet_run(decoder.decode, assembler.feed_quiet, frames, index)
                seen.append(("stopped at", index, message))
                if index == len(frames):
                    break
                frame = frames[index]
                index += 1
                if type(frame) is bytes:
                    seen.append(list(assembler.feed(message, frame)))
            except DecodeError as exc:
                seen.append(str(exc))
                index += 1
    finally:
        if assembler._open is not None:
            assembler._open.close()
        spill.close()
    return seen


_NOT_A_PAYLOAD = object()  # what a poll gives besides payloads (a Keepalive)


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from([*_POOL, _NOT_A_PAYLOAD]), max_size=16),
    st.sampled_from([0, 0x780]),
)
def test_a_poll_s_quiet_payloads_are_taken_as_the_reference_takes_them(
    messages: list[Any], skip_through: int
) -> None:
    """The compiled quiet run (_assembly.pxi quiet_run) against loop._py_quiet_run: where it
    stops, with which message, and what the driver then feeds."""
    frames = [m if m is _NOT_A_PAYLOAD else encode(m) for m in messages]
    assert core.compiled is not None
    compiled = _run_as_the_driver_runs(core.compiled.quiet_run, frames, skip_through)
    reference = _run_as_the_driver_runs(cdc.pipeline.loop._py_quiet_run, frames, skip_through)
    assert cdc.pipeline.loop._quiet_run is core.compiled.quiet_run
    assert compiled == reference


# --- a row change's whole record (cdc/pipeline/_mapping.pyx) -----------------------------------

_STATUS = st.sampled_from(["active", "closed", "pending", "t", "5"])


@st.composite
def row_changes(draw: st.DrawFn) -> tuple[ActivityMapper, RowChange]:
    """A table with rules (transitions, actor, ignored and redacted columns, a key of one or two
    columns) and one change of it, in a transaction that may carry context and an origin."""
    names = ["id", "status", "owner", "updated_at", "secret", "note"]
    types = [TEXT, TEXT, INT4, TIMESTAMPTZ, TEXT, TEXT]
    key = draw(st.sampled_from([("id",), ("id", "owner"), ("secret",), ()]))
    info = relation_info(
        relation(16600, "things", list(zip(names, types, strict=True)), identity="d"),
        lambda oid, s, t: key or None,
    )
    rules: dict[str, Any] = {
        "name": "public.things",
        "entity_type": draw(st.sampled_from(["thing", "entité"])),
        "actor_columns": draw(st.sampled_from([[], ["owner"], ["note", "owner"]])),
        "ignore_columns": draw(st.sampled_from([[], ["updated_at"]])),
        "redact_columns": ["secret"],
        "rules": draw(
            st.lists(
                st.fixed_dictionaries(
                    {"column": st.just("status"), "action": st.sampled_from(["a.x", "a.y"])},
                    optional={
                        "from": _STATUS,
                        "to": _STATUS,
                        "operations": st.sampled_from([["update"], ["insert", "update"]]),
                        "severity": st.sampled_from(["warning", "notice"]),
                        "category": st.just("security"),
                    },
                ).filter(lambda r: "from" in r or "to" in r),
                max_size=3,
            )
        ),
    }
    settings_ = settings_from_mapping({"source": {"dsn": "host=db"}, "tables": [rules]}, env={})
    mapper = ActivityMapper(settings_, types=TypeRegistry())
    value = st.none() | typed_text
    new = tuple(draw(value) for _ in names)
    old = tuple(draw(st.just(v) | value) for v in new)  # some columns unchanged
    operation, old_kind = draw(
        st.sampled_from([("insert", None), ("update", "O"), ("update", None), ("delete", "O")])
    )
    messages = []
    if draw(st.booleans()):
        body = draw(
            st.sampled_from(
                # an actor in the summary: ASCII, not, a lone surrogate (JSON allows one)
                [
                    '{"actor_id": "u1"}',
                    '{"actor_id": "Zoë"}',
                    '{"actor_id": "\\ud800"}',
                    '{"request": 1}',
                    "not json",
                ]
            )
        )
        messages.append(Message(True, 10, "cdc.context", body.encode()))
    txn = TransactionInfo(
        77,
        0x16B3740,
        datetime(2026, 12, 4, 1, 2, 3, 4, tzinfo=UTC),
        draw(st.none() | st.just("replica-1")),
        tuple(messages),
    )
    change = RowChange(
        txn,
        draw(st.integers(0, 5)),
        info,
        operation,
        None if operation == "insert" else (old if old_kind == "O" else None),
        None if operation == "delete" else new,
        old_kind,
        draw(st.sampled_from([(), ("note",)])),
    )
    return mapper, change


@settings(max_examples=400)
@given(row_changes())
def test_a_row_change_maps_to_the_record_the_reference_makes(
    case: tuple[ActivityMapper, RowChange],
) -> None:
    mapper, change = case
    assert core.mapping is not None
    compiled = outcome(core.mapping.map_row_change, mapper, change)
    unavailable = mapper.toast_unavailable
    mapper._txn = None  # the reference starts from the same state: nothing cached
    assert compiled == outcome(ActivityMapper._py_row_change, mapper, change)
    assert mapper.toast_unavailable == 2 * unavailable
    mapper._txn = None
    assert outcome(mapper.map, change) == compiled  # the compiled dispatch (map_change)


@settings(max_examples=500)
@given(
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), UTC]) | st.none())
)
def test_a_commit_time_is_written_as_isoformat_writes_it(moment: datetime) -> None:
    assert core.mapping is not None
    assert core.mapping.iso_datetime(moment) == moment.isoformat()


@given(st.integers(0, 2**64 - 1))
def test_an_lsn_is_written_as_format_lsn_writes_it(value: int) -> None:
    assert core.mapping is not None
    assert core.mapping.lsn_text(value) == format_lsn(value)


# --- the chained sink's COPY lines (cdc/pipeline/_copy_lines.pyx) ------------------------------

_hostile = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00")),
    st.sampled_from(["\\N", "\\", "\t", "\n", "\r", "\\.", "", "a\\tb", "é\t€\n𝄞", "1e5", "-0"]),
)
_chain_records = st.builds(
    ActivityRecord,
    occurred_at=st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.isoformat()),  # no offset: a time only the server reads
        st.sampled_from(["2024-05-06T07:08:09+02:00", "epoch"]),
    ),
    source=st.sampled_from(["database", "application", "shadow"]),
    operation=st.sampled_from(["insert", "update", "delete", "truncate", "message"]),
    action=_hostile,
    category=_hostile,
    severity=st.sampled_from(["info", "warning"]),
    schema_name=st.none() | _hostile,
    table_name=st.none() | _hostile,
    entity_type=st.none() | _hostile,
    entity_id=st.none() | _hostile,
    actor_id=st.none() | _hostile,
    context=st.none() | _hostile,
    old=st.none() | _hostile,
    new=st.none() | _hostile,
    changes=st.none() | _hostile,
    summary=st.none() | _hostile,
    xid=st.none() | st.integers(0, 2**32 - 1),
    commit_lsn=st.integers(0, 2**64 - 1).map(lambda n: f"{n >> 32:X}/{n & 0xFFFFFFFF:X}"),
    seq=st.integers(0, 2**31 - 1),
)


@settings(max_examples=300)
@given(
    st.lists(_chain_records, max_size=8),
    st.binary(min_size=0, max_size=40),
    st.integers(0, 2**62),
    st.datetimes(timezones=st.just(UTC)),
    st.none() | st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=3),
)
def test_chained_copy_lines_are_the_bytes_of_the_reference(
    records: list[ActivityRecord],
    prev: bytes,
    position: int,
    recorded_at: datetime,
    server_times: dict[str, str] | None,
) -> None:
    head = ChainHead(prev, position)
    assert core.copy_lines is not None
    expected = _py_encode_chained_rows(records, head, recorded_at, server_times)
    assert encode_chained_rows(records, head, recorded_at, server_times) == expected


def test_chained_copy_lines_of_the_captured_records_are_the_reference_bytes() -> None:
    records = list(_vector_records())
    recorded_at = datetime(2026, 12, 4, 18, 0, 0, 1, tzinfo=UTC)
    head = ChainHead(bytes(range(32)), 7)
    expected = _py_encode_chained_rows(records, head, recorded_at)
    assert encode_chained_rows(records, head, recorded_at) == expected
    assert len(records) > 20 and expected[0].count(b"\n") == len(records)


def test_a_record_of_another_shape_is_encoded_by_the_reference() -> None:
    """A field the compiled lines do not take (not str, a negative number) falls back."""
    (record,) = list(_vector_records())[:1]
    odd = [record._replace(seq=-1), record._replace(xid=True), record._replace(summary=None)]
    head = ChainHead(b"", 0)
    at = datetime(2026, 12, 4, tzinfo=UTC)
    assert encode_chained_rows(odd, head, at) == _py_encode_chained_rows(odd, head, at)


# --- the binary COPY rows (cdc/pipeline/_copy_lines.pyx) -----------------------------------------

_edge_records = st.tuples(
    _chain_records,
    st.fixed_dictionaries(
        {},
        optional={
            "occurred_at": st.sampled_from(
                [
                    "2026-02-29T00:00:00.000000+00:00",
                    "2024-02-29T23:59:59.999999+00:00",
                    "2026-12-31T23:59:60.000000+00:00",
                    "2026-12-05T24:00:00.000000+00:00",
                    "0000-01-01T00:00:00.000000+00:00",
                    "0001-01-01T00:00:00.000000+00:00",
                    "0001-01-01T00:00:00+00:01",
                    "9999-12-31T23:59:59.999999-00:01",
                    # the commit-time form's near misses (_commit_utc's fast path declines)
                    "2026-1x-05T00:00:00.000000+00:00",
                    "2026-12-05T00:00:00.00000x+00:00",
                    "2026-12-05 00:00:00.000000+00:00",
                    "2026-12-05T00:00:00.000000+00:01",
                    "2026-12-05T00:00:00.000000-00:00",
                    "\u0662\u0660\u0662\u0666-12-05T00:00:00.000000+00:00",
                ]
            ),
            "xid": st.integers(-(2**63) - 1, 2**64),
            "seq": st.integers(-(2**31) - 1, 2**32),
            "commit_lsn": st.one_of(
                st.from_regex(r"[0-9a-fA-F]{0,10}/?[0-9a-fA-Fg/ ]{0,10}", fullmatch=True),
                st.sampled_from(["FFFFFFFF/FFFFFFFF", "0/0", "00000000/00000001", "\uff11/1"]),
            ),
            "summary": st.sampled_from([1, b"x", "\x00", "\x00\ufeff"]),
        },
    ),
).map(lambda pair: pair[0]._replace(**pair[1]))


@settings(max_examples=400, deadline=None)  # a deadline is a timed assertion
@given(
    st.lists(_edge_records, max_size=6),
    st.none() | st.binary(min_size=0, max_size=40),
    st.integers(0, 2**62),
    st.datetimes(timezones=st.just(UTC)),
    st.integers(0, 15),
)
def test_binary_copy_rows_are_the_bytes_of_the_reference(
    records: list[ActivityRecord],
    prev: bytes | None,
    position: int,
    recorded_at: datetime,
    jsonb: int,
) -> None:
    """The same bytes and head, or None (the flush goes as text) for the same records: hostile
    text, NULLs, numbers and LSNs in and out of their columns' range, times only the server
    reads, chained or plain."""
    head = None if prev is None else ChainHead(prev, position)
    assert core.copy_lines is not None
    expected = _py_encode_binary_rows(records, head, recorded_at, jsonb)
    assert encode_binary_rows(records, head, recorded_at, jsonb) == expected


def test_binary_copy_rows_of_the_captured_records_are_the_reference_bytes() -> None:
    records = list(_vector_records())
    recorded_at = datetime(2026, 12, 4, 18, 0, 0, 1, tzinfo=UTC)
    head = ChainHead(bytes(range(32)), 7)
    for jsonb in (0, 1, 15):
        expected = _py_encode_binary_rows(records, head, recorded_at, jsonb)
        assert expected is not None
        assert encode_binary_rows(records, head, recorded_at, jsonb) == expected
        assert expected[1] == encode_chained_rows(records, head, recorded_at)[1]


# --- the suites again, on the pure implementation ---------------------------------------------

PURE_SUITES = (
    "tests/unit/test_pgoutput.py",
    "tests/unit/test_pgoutput_properties.py",
    "tests/unit/test_fuzz_decoder.py",
    "tests/unit/test_changes.py",
    "tests/unit/test_activity_mapping.py",
    "tests/unit/test_values.py",
    "tests/unit/test_sink_encoding.py",
    "tests/unit/test_copy_binary.py",
)


def test_decoder_changes_and_mapping_suites_pass_on_the_pure_implementation() -> None:
    env = {**os.environ, "CDC_PURE_PYTHON": "1"}
    check = subprocess.run(
        [sys.executable, "-c", "import cdc.pipeline.core as c; print(c.IMPLEMENTATION)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == "python"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *PURE_SUITES],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and " skipped" not in done.stdout
