#!/usr/bin/env python3
"""Capture raw pgoutput messages from a live PostgreSQL 15 into ``pgoutput_pg15.json``.

The unit tests of :mod:`cdc.pipeline.pgoutput` decode these bytes; they need no database. Re-run
this
script only to refresh the vectors (for example against a new server version)::

    python tests/vectors/capture_pgoutput.py "host=/tmp/pg port=55499 user=postgres dbname=postgres"

The server needs ``wal_level=logical`` and ``max_prepared_transactions > 0``; use a throwaway
cluster: the script creates (and drops again) the schema ``cdc_vectors``, a publication, a
replication origin and two replication slots.

How the bytes are labelled: before each scenario the script emits a *non-transactional*
logical message with the prefix ``cdc-capture-marker`` whose content is the scenario name.
Non-transactional messages are decoded at their own WAL position, and every scenario runs (and
commits, prepares or rolls back) before the next marker, so the markers cut the decoded stream
into scenarios. Marker messages themselves are not written out.

Which options PostgreSQL 15 accepts for pgoutput (``LOGICALREP_PROTO_MAX_VERSION_NUM`` is 3):

* ``proto_version`` 1: no ``streaming``, no ``two_phase``; ``binary`` and ``messages`` are fine.
* ``proto_version`` 2: adds ``streaming`` (a boolean in 15; ``parallel`` only exists from 16).
* ``proto_version`` 3: adds ``two_phase``. Version 4 (Stream Abort with abort LSN and time) is
  PostgreSQL 16+, so those bytes are hand-built in the unit tests.

Peeking does not consume the slot, so one slot serves the proto 1, binary and streaming views.
Two-phase decoding needs its own slot, created with ``two_phase`` on before the prepared
transactions happen (enabling it later would mark the slot two-phase from that point on).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

SCHEMA = "cdc_vectors"
PUBLICATION = "cdc_vectors_pub"
SLOT = "cdc_vectors_slot"
SLOT_2PC = "cdc_vectors_slot_2pc"
ORIGIN = "cdc_vectors_origin"
MARKER_PREFIX = "cdc-capture-marker"
MESSAGE_PREFIX = "cdc-test"
KEEP_PER_KIND = 3  # a streamed transaction has thousands of Inserts; a few of each kind suffice
# ...but every Stream Start and Stop is kept, so that the kept messages of a view still form a
# well-nested sequence a stream-tracking decoder can be fed in order.
KEEP_ALL_KINDS = {"stream_start", "stream_start_first", "stream_stop"}

DEFAULT_OUT = Path(__file__).with_name("pgoutput_pg15.json")

SETUP_SQL = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE TYPE {SCHEMA}.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE {SCHEMA}.all_types (
    id          int4 PRIMARY KEY,
    c_int2      int2,
    c_int8      int8,
    c_numeric   numeric(10, 2),
    c_text      text,
    c_varchar   varchar(20),
    c_bool      bool,
    c_ts        timestamptz,
    c_date      date,
    c_bytea     bytea,
    c_jsonb     jsonb,
    c_uuid      uuid,
    c_float8    float8,
    c_int_array int4[],
    c_mood      {SCHEMA}.mood,
    c_dropped   text,
    c_generated int4 GENERATED ALWAYS AS (id * 2) STORED
);
-- Dropped and generated columns are not sent: the Relation has 15 columns, not 17.
ALTER TABLE {SCHEMA}.all_types DROP COLUMN c_dropped;
CREATE TABLE {SCHEMA}.full_identity (id int4 PRIMARY KEY, name text, note text);
ALTER TABLE {SCHEMA}.full_identity REPLICA IDENTITY FULL;
CREATE TABLE {SCHEMA}.toasty (id int4 PRIMARY KEY, small int4, big text);
-- EXTERNAL: stored out of line uncompressed, so the value is really TOASTed on disk.
ALTER TABLE {SCHEMA}.toasty ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE {SCHEMA}.parent (id serial PRIMARY KEY, label text);
CREATE TABLE {SCHEMA}.child (
    id serial PRIMARY KEY, parent_id int4 REFERENCES {SCHEMA}.parent (id), label text
);
CREATE TABLE {SCHEMA}.other (id serial PRIMARY KEY, label text);
CREATE TABLE {SCHEMA}.stream_rows (id int4 PRIMARY KEY, mood {SCHEMA}.mood, payload text);
CREATE TABLE {SCHEMA}.stream_aux (id int4 PRIMARY KEY);
CREATE PUBLICATION {PUBLICATION} FOR TABLE
    {SCHEMA}.all_types, {SCHEMA}.full_identity, {SCHEMA}.toasty, {SCHEMA}.parent,
    {SCHEMA}.child, {SCHEMA}.other, {SCHEMA}.stream_rows, {SCHEMA}.stream_aux;
"""

ALL_TYPES_ROW = f"""
INSERT INTO {SCHEMA}.all_types
    (id, c_int2, c_int8, c_numeric, c_text, c_varchar, c_bool, c_ts, c_date, c_bytea,
     c_jsonb, c_uuid, c_float8, c_int_array, c_mood)
VALUES
    (1, 32767, 9007199254740993, 12345.67, 'héllo wörld ✓', 'short', true,
     '2024-01-02 03:04:05.123456+00', '2024-02-29', '\\xdeadbeef'::bytea,
     '{{"a": [1, 2]}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1.5, '{{1,2,3}}', 'happy'),
    (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
"""

# Enough rows to exceed logical_decoding_work_mem = 64kB several times over.
STREAM_ROWS = 1500
PAYLOAD = "repeat('streamed payload ', 8)"

# (scenario name, statements run in order in one autocommit session)
SCENARIOS: list[tuple[str, list[str]]] = [
    ("insert_all_types", [ALL_TYPES_ROW]),
    ("update_default_identity", [f"UPDATE {SCHEMA}.all_types SET c_text = 'changed' WHERE id = 1"]),
    ("update_key_change", [f"UPDATE {SCHEMA}.all_types SET id = 3 WHERE id = 2"]),
    ("delete_default_identity", [f"DELETE FROM {SCHEMA}.all_types WHERE id = 3"]),
    (
        "full_identity",
        [
            "BEGIN",
            f"INSERT INTO {SCHEMA}.full_identity VALUES (1, 'alice', 'first')",
            f"UPDATE {SCHEMA}.full_identity SET name = 'bob' WHERE id = 1",
            f"DELETE FROM {SCHEMA}.full_identity WHERE id = 1",
            "COMMIT",
        ],
    ),
    ("toast_setup", [f"INSERT INTO {SCHEMA}.toasty VALUES (1, 1, repeat('x', 10000))"]),
    ("unchanged_toast", [f"UPDATE {SCHEMA}.toasty SET small = 2 WHERE id = 1"]),
    (
        "truncate_setup",
        [
            f"INSERT INTO {SCHEMA}.parent (label) VALUES ('p')",
            f"INSERT INTO {SCHEMA}.child (parent_id, label) VALUES (1, 'c')",
            f"INSERT INTO {SCHEMA}.other (label) VALUES ('o')",
        ],
    ),
    (
        "truncate",
        [f"TRUNCATE {SCHEMA}.parent, {SCHEMA}.other RESTART IDENTITY CASCADE"],
    ),
    (
        "message_transactional",
        [
            "BEGIN",
            f"SELECT pg_logical_emit_message(true, '{MESSAGE_PREFIX}', 'transactional payload')",
            f"SELECT pg_logical_emit_message(true, '{MESSAGE_PREFIX}', '\\x00ff01'::bytea)",
            "COMMIT",
        ],
    ),
    (
        "message_non_transactional",
        [f"SELECT pg_logical_emit_message(false, '{MESSAGE_PREFIX}', 'non-transactional')"],
    ),
    (
        "origin",
        [
            f"SELECT pg_replication_origin_session_setup('{ORIGIN}')",
            "BEGIN",
            "SELECT pg_replication_origin_xact_setup('0/1234ABCD', '2024-01-02 03:04:05+00')",
            f"INSERT INTO {SCHEMA}.other (label) VALUES ('from elsewhere')",
            "COMMIT",
            "SELECT pg_replication_origin_session_reset()",
        ],
    ),
    (
        "streamed_commit",
        [
            "BEGIN",
            f"INSERT INTO {SCHEMA}.stream_rows SELECT g, 'ok', {PAYLOAD}"
            f" FROM generate_series(1, {STREAM_ROWS}) g",
            f"SELECT pg_logical_emit_message(true, '{MESSAGE_PREFIX}', 'inside a stream')",
            "SAVEPOINT doomed",
            f"INSERT INTO {SCHEMA}.stream_rows SELECT g, 'sad', {PAYLOAD}"
            f" FROM generate_series({STREAM_ROWS + 1}, {3 * STREAM_ROWS}) g",
            "ROLLBACK TO SAVEPOINT doomed",
            f"UPDATE {SCHEMA}.stream_rows SET mood = 'happy' WHERE id <= 2",
            f"DELETE FROM {SCHEMA}.stream_rows WHERE id = 3",
            f"INSERT INTO {SCHEMA}.stream_aux VALUES (1)",
            f"TRUNCATE {SCHEMA}.stream_aux",
            "COMMIT",
        ],
    ),
    (
        "streamed_rollback",
        [
            "BEGIN",
            f"INSERT INTO {SCHEMA}.stream_rows SELECT g, 'ok', {PAYLOAD}"
            f" FROM generate_series({3 * STREAM_ROWS + 1}, {5 * STREAM_ROWS}) g",
            "ROLLBACK",
        ],
    ),
    (
        "two_phase_commit",
        [
            "BEGIN",
            f"INSERT INTO {SCHEMA}.full_identity VALUES (10, 'prepared', 'commit me')",
            "PREPARE TRANSACTION 'cdc-gid-commit'",
            "COMMIT PREPARED 'cdc-gid-commit'",
        ],
    ),
    (
        "two_phase_rollback",
        [
            "BEGIN",
            f"INSERT INTO {SCHEMA}.full_identity VALUES (11, 'prepared', 'roll me back')",
            "PREPARE TRANSACTION 'cdc-gid-rollback'",
            "ROLLBACK PREPARED 'cdc-gid-rollback'",
        ],
    ),
    (
        "stream_prepare",
        [
            "BEGIN",
            f"INSERT INTO {SCHEMA}.stream_rows SELECT g, 'happy', {PAYLOAD}"
            f" FROM generate_series({5 * STREAM_ROWS + 1}, {6 * STREAM_ROWS}) g",
            "PREPARE TRANSACTION 'cdc-gid-stream'",
            "COMMIT PREPARED 'cdc-gid-stream'",
        ],
    ),
]

# (view name, slot, pgoutput options, scenarios whose messages are kept from this view)
VIEWS: list[tuple[str, str, dict[str, str], set[str]]] = [
    (
        "v1",
        SLOT,
        {"proto_version": "1", "messages": "true"},
        {
            "insert_all_types",
            "update_default_identity",
            "update_key_change",
            "delete_default_identity",
            "full_identity",
            "unchanged_toast",
            "truncate",
            "message_transactional",
            "message_non_transactional",
            "origin",
        },
    ),
    (
        "v1_binary",
        SLOT,
        {"proto_version": "1", "messages": "true", "binary": "true"},
        {"insert_all_types"},
    ),
    (
        "v2_stream",
        SLOT,
        {"proto_version": "2", "messages": "true", "streaming": "on"},
        {"streamed_commit", "streamed_rollback"},
    ),
    (
        "v3_two_phase",
        SLOT_2PC,
        {"proto_version": "3", "messages": "true", "streaming": "on", "two_phase": "true"},
        {"two_phase_commit", "two_phase_rollback", "stream_prepare"},
    ),
]


def _cstring(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(0, offset)
    return data[offset:end].decode(), end + 1


def marker_scenario(data: bytes) -> str | None:
    """The scenario name if ``data`` is one of our non-transactional marker messages."""
    if data[:1] != b"M" or data[1] != 0:
        return None
    prefix, offset = _cstring(data, 10)  # type, flags, Int64 lsn
    if prefix != MARKER_PREFIX:
        return None
    (length,) = struct.unpack_from("!i", data, offset)
    return data[offset + 4 : offset + 4 + length].decode()


def kind_of(data: bytes, in_stream: bool) -> str:
    """A short label for a raw message, independent of the decoder under test."""
    type_byte = chr(data[0])
    body = 5 if in_stream and type_byte in "RYIUDTM" else 1  # streamed ones carry an xid
    if type_byte == "U":
        marker = chr(data[body + 4])
        return {"K": "update_old_key", "O": "update_old_row"}.get(marker, "update")
    if type_byte == "D":
        return "delete_old_row" if chr(data[body + 4]) == "O" else "delete_old_key"
    if type_byte == "M":
        return "message_transactional" if data[body] & 1 else "message_non_transactional"
    if type_byte == "S":
        return "stream_start_first" if data[5] == 1 else "stream_start"
    if type_byte == "A":
        xid, subxid = struct.unpack_from("!II", data, 1)
        return "stream_abort_toplevel" if xid == subxid else "stream_abort_subtransaction"
    return {
        "B": "begin",
        "C": "commit",
        "O": "origin",
        "R": "relation",
        "Y": "type",
        "I": "insert",
        "T": "truncate",
        "E": "stream_stop",
        "c": "stream_commit",
        "b": "begin_prepare",
        "P": "prepare",
        "K": "commit_prepared",
        "r": "rollback_prepared",
        "p": "stream_prepare",
    }[type_byte]


def peek(conn: psycopg.Connection[Any], slot: str, options: dict[str, str]) -> list[bytes]:
    flat = [item for pair in options.items() for item in pair]
    flat += ["publication_names", PUBLICATION]
    rows = conn.execute(
        "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, VARIADIC %s)",
        (slot, flat),
    ).fetchall()
    return [bytes(row[0]) for row in rows]


def label(view: str, proto: int, keep: set[str], messages: list[bytes]) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = []
    scenario: str | None = None
    in_stream = False
    seen: Counter[tuple[str, str]] = Counter()
    for data in messages:
        if not in_stream:
            marked = marker_scenario(data)
            if marked is not None:
                scenario = marked
                continue
        kind = kind_of(data, in_stream)
        if scenario in keep:
            seen[(scenario, kind)] += 1
            count = seen[(scenario, kind)]
            if count <= KEEP_PER_KIND or kind in KEEP_ALL_KINDS:
                suffix = "" if count == 1 else f"#{count}"
                vectors.append(
                    {
                        "name": f"{view}/{scenario}/{kind}{suffix}",
                        "proto_version": proto,
                        "in_stream": in_stream,
                        "hex": data.hex(),
                    }
                )
        if data[0] == ord("S"):
            in_stream = True
        elif data[0] == ord("E"):
            in_stream = False
    return vectors


def run(dsn: str, out: Path) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.info.server_version
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings"
                " WHERE name IN ('wal_level', 'max_prepared_transactions')"
            ).fetchall()
        )
        if version // 10000 != 15:
            print(f"warning: server is {version}, the file name says pg15", file=sys.stderr)
        if settings.get("wal_level") != "logical" or int(settings["max_prepared_transactions"]) < 1:
            print(f"server not ready for capture: {settings}", file=sys.stderr)
            return 2
        try:
            conn.execute(SETUP_SQL)
            conn.execute("SELECT pg_replication_origin_create(%s)", (ORIGIN,))
            conn.execute(
                "SELECT pg_create_logical_replication_slot(%s, 'pgoutput', false, false)", (SLOT,)
            )
            conn.execute(
                "SELECT pg_create_logical_replication_slot(%s, 'pgoutput', false, true)",
                (SLOT_2PC,),
            )
            # The decoding side spills or streams once its reorder buffer exceeds this.
            conn.execute("SET logical_decoding_work_mem = '64kB'")
            # Text output of timestamptz and friends follows the decoding session's settings.
            conn.execute("SET TimeZone = 'UTC'")
            conn.execute("SET DateStyle = 'ISO, MDY'")
            conn.execute("SET extra_float_digits = 1")
            for name, statements in SCENARIOS:
                conn.execute("SELECT pg_logical_emit_message(false, %s, %s)", (MARKER_PREFIX, name))
                for statement in statements:
                    conn.execute(statement)
            vectors: list[dict[str, Any]] = []
            for view, slot, options, keep in VIEWS:
                got = label(view, int(options["proto_version"]), keep, peek(conn, slot, options))
                vectors += got
                print(f"{view}: {len(got)} vectors", file=sys.stderr)
        finally:
            cleanup(conn)
    out.write_text(json.dumps(vectors, indent=1) + "\n")
    kinds = sorted({v["name"].split("/")[2].split("#")[0] for v in vectors})
    print(f"wrote {len(vectors)} vectors to {out}; kinds: {', '.join(kinds)}", file=sys.stderr)
    return 0


def cleanup(conn: psycopg.Connection[Any]) -> None:
    """Leave the server as it was, whatever step failed: slots first, they pin WAL forever."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")  # a scenario failed inside its explicit BEGIN
    for slot in (SLOT, SLOT_2PC):
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (slot,),
        )
    # A scenario that failed half-way may leave a prepared transaction holding locks.
    leftover = conn.execute("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'cdc-gid-%'")
    for (gid,) in leftover.fetchall():
        conn.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid)))
    conn.execute(
        "SELECT pg_replication_origin_session_reset()"
        " WHERE pg_replication_origin_session_is_setup()"
    )
    conn.execute(
        "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname = %s",
        (ORIGIN,),
    )
    conn.execute(f"DROP PUBLICATION IF EXISTS {PUBLICATION}")
    conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn", help="libpq connection string of a throwaway PostgreSQL 15")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return run(args.dsn, args.out)


if __name__ == "__main__":
    sys.exit(main())
