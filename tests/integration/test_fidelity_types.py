"""Differential test: a record's ``new``/``old`` equal PostgreSQL's own ``to_jsonb(row)``.

Hypothesis draws rows over many column types; each row is written to a real table, ``to_jsonb``
of the row is read in a session with the daemon's settings, and the drained record must be
equal, for inserts, for updates (old and new) and for deletes (old).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Json, Jsonb

from cdc.pipeline.stream import SESSION_OPTIONS
from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, make_settings, records

pytestmark = [pytest.mark.integration, pytest.mark.every_server]

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s "complicated"');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN money_amount AS numeric(38, 18);
CREATE DOMAIN label AS text;
CREATE TYPE pair AS (n integer, t text, amount numeric, flag boolean);
CREATE TABLE everything (
    id          bigint PRIMARY KEY,
    t_text      text,
    t_varchar   varchar(40),
    t_char      char(6),
    t_int2      smallint,
    t_int4      integer,
    t_int8      bigint,
    t_numeric   numeric,
    t_float4    real,
    t_float8    double precision,
    t_bool      boolean,
    t_json      json,
    t_jsonb     jsonb,
    t_uuid      uuid,
    t_date      date,
    t_time      time,
    t_timetz    timetz,
    t_ts        timestamp,
    t_tstz      timestamptz,
    t_interval  interval,
    t_bytea     bytea,
    t_inet      inet,
    t_cidr      cidr,
    t_macaddr   macaddr,
    t_money     money,
    t_enum      mood,
    t_posint    posint,
    t_amount    money_amount,
    t_label     label,
    t_int_arr   integer[],
    t_text_2d   text[],
    t_num_arr   numeric[],
    t_jsonb_arr jsonb[],
    t_enum_arr  mood[],
    t_pair      pair,
    t_pair_arr  pair[],
    t_int4range int4range,
    t_tstzrange tstzrange,
    t_point     point
);
"""

COLUMNS = [
    "t_text", "t_varchar", "t_char", "t_int2", "t_int4", "t_int8", "t_numeric", "t_float4",
    "t_float8", "t_bool", "t_json", "t_jsonb", "t_uuid", "t_date", "t_time", "t_timetz",
    "t_ts", "t_tstz", "t_interval", "t_bytea", "t_inet", "t_cidr", "t_macaddr", "t_money",
    "t_enum", "t_posint", "t_amount", "t_label", "t_int_arr", "t_text_2d", "t_num_arr",
    "t_jsonb_arr", "t_enum_arr", "t_pair", "t_pair_arr", "t_int4range", "t_tstzrange",
    "t_point",
]  # fmt: skip

text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | text
    | st.floats(allow_nan=False, allow_infinity=False, width=32),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
decimals = (
    st.decimals(allow_nan=True, allow_infinity=False, places=None)
    .filter(lambda d: d.is_nan() or abs(d.adjusted()) < 60)
    .map(lambda d: Decimal("NaN") if d.is_nan() else d)  # PostgreSQL has no signed NaN
)
aware = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9998, 12, 30),
    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)),
                               dt.timezone(dt.timedelta(hours=-8))]),
)  # fmt: skip
bc_dates = st.integers(1, 4000).map(lambda y: f"{y:04d}-03-15 BC")
pairs = st.tuples(st.integers(-1000, 1000) | st.none(), text | st.none(),
                  st.decimals(allow_nan=False, allow_infinity=False, places=3) | st.none(),
                  st.booleans() | st.none())  # fmt: skip


def nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def pair_literal(value: tuple[Any, ...]) -> str:
    def field(item: Any) -> str:
        if item is None:
            return ""
        text_value = str(item).lower() if isinstance(item, bool) else str(item)
        return '"' + text_value.replace("\\", "\\\\").replace('"', '""') + '"'

    return "(" + ",".join(field(item) for item in value) + ")"


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    side = draw(st.integers(1, 3))
    return {
        "t_text": draw(nullable(text)),
        "t_varchar": draw(nullable(st.text(max_size=40).filter(lambda s: "\x00" not in s))),
        "t_char": draw(nullable(st.text("ab c", max_size=6))),
        "t_int2": draw(nullable(st.integers(-(2**15), 2**15 - 1))),
        "t_int4": draw(nullable(st.integers(-(2**31), 2**31 - 1))),
        "t_int8": draw(nullable(st.integers(-(2**63), 2**63 - 1))),
        "t_numeric": draw(nullable(decimals)),
        "t_float4": draw(nullable(st.floats(width=32))),
        "t_float8": draw(nullable(st.floats())),
        "t_bool": draw(nullable(st.booleans())),
        "t_json": draw(nullable(json_values.map(Json))),
        "t_jsonb": draw(nullable(json_values.map(Jsonb))),
        "t_uuid": draw(nullable(st.uuids())),
        "t_date": draw(nullable(st.dates().map(str) | bc_dates | st.just("infinity"))),
        "t_time": draw(nullable(st.times())),
        "t_timetz": draw(nullable(st.times(timezones=st.just(dt.timezone(dt.timedelta(hours=2)))))),
        "t_ts": draw(nullable(st.datetimes().map(str) | bc_dates | st.just("-infinity"))),
        "t_tstz": draw(nullable(aware)),
        "t_interval": draw(nullable(st.timedeltas(min_value=-dt.timedelta(days=9999),
                                                  max_value=dt.timedelta(days=9999)))),
        "t_bytea": draw(nullable(st.binary(max_size=20))),
        "t_inet": draw(nullable(st.ip_addresses())),
        "t_cidr": draw(nullable(st.ip_addresses(v=4).map(lambda a: ipaddress.ip_network(a)))),
        "t_macaddr": draw(nullable(st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":")))),
        "t_money": draw(nullable(st.decimals(-10**9, 10**9, places=2).map(str))),
        "t_enum": draw(nullable(st.sampled_from(["sad", "ok", "happy", 'it\'s "complicated"']))),
        "t_posint": draw(nullable(st.integers(1, 2**31 - 1))),
        "t_amount": draw(nullable(st.decimals(min_value=-10**19, max_value=10**19, places=18))),
        "t_label": draw(nullable(text)),
        "t_int_arr": draw(nullable(st.lists(nullable(st.integers(-100, 100)), max_size=5))),
        "t_text_2d": draw(nullable(st.lists(st.lists(nullable(text), min_size=side, max_size=side),
                                            min_size=1, max_size=3))),
        "t_num_arr": draw(nullable(st.lists(nullable(decimals), max_size=4))),
        "t_jsonb_arr": draw(nullable(st.lists(json_values.map(Jsonb), max_size=3))),
        "t_enum_arr": draw(nullable(st.lists(st.sampled_from(["sad", "ok"]), max_size=3))),
        "t_pair": draw(nullable(pairs.map(pair_literal))),
        "t_pair_arr": draw(nullable(st.lists(pairs.map(pair_literal), max_size=3))),
        "t_int4range": draw(nullable(st.sampled_from(["[1,5)", "empty", "(,10]", "[-3,)"]))),
        "t_tstzrange": draw(nullable(st.sampled_from(["[2024-01-01 00:00+00,2024-02-01 00:00+00)",
                                                      "empty"]))),
        "t_point": draw(nullable(st.sampled_from(["(1,2)", "(-1.5,3e10)"]))),
    }  # fmt: skip


CASTS = {"t_date": "date", "t_ts": "timestamp", "t_money": "money", "t_enum": "mood",
         "t_pair": "pair", "t_pair_arr": "pair[]", "t_int4range": "int4range",
         "t_tstzrange": "tstzrange", "t_point": "point", "t_macaddr": "macaddr",
         "t_enum_arr": "mood[]", "t_text_2d": "text[]", "t_num_arr": "numeric[]"}  # fmt: skip
INSERT = "INSERT INTO everything (id, {cols}) VALUES (%s, {vals})".format(
    cols=", ".join(COLUMNS),
    vals=", ".join(f"%s::{CASTS[c]}" if c in CASTS else "%s" for c in COLUMNS),
)


@pytest.fixture
def typed(pg: PgDatabase):  # type: ignore[no-untyped-def]
    from cdc.control.setup import setup

    pg.execute(SCHEMA)
    settings_ = make_settings(pg, [{"name": "public.everything"}], redaction={"patterns": []})
    setup(settings_)
    return settings_


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(rows(), min_size=1, max_size=6), updated=rows())
def test_new_and_old_equal_to_jsonb_for_every_type(pg: PgDatabase, typed: Any,
                                                    batch: list[dict[str, Any]],
                                                    updated: dict[str, Any]) -> None:  # fmt: skip
    expected: dict[tuple[str, int], tuple[Any, Any]] = {}
    with pg.connect(options=SESSION_OPTIONS) as conn:
        base = conn.execute("SELECT coalesce(max(id), 0) FROM everything").fetchone()[0]  # type: ignore[index]
        ids = []
        for offset, row in enumerate(batch, 1):
            row_id = base + offset
            ids.append(row_id)
            conn.execute(INSERT, [row_id, *(row[c] for c in COLUMNS)])
            new = conn.execute("SELECT to_jsonb(e) FROM everything e WHERE id = %s", [row_id])
            expected[("insert", row_id)] = (None, new.fetchone()[0])  # type: ignore[index]
        target = ids[0]
        before = conn.execute("SELECT to_jsonb(e) FROM everything e WHERE id = %s", [target])
        old = before.fetchone()[0]  # type: ignore[index]
        sets = ", ".join(f"{c} = %s::{CASTS[c]}" if c in CASTS else f"{c} = %s" for c in COLUMNS)
        conn.execute(f"UPDATE everything SET {sets} WHERE id = %s",
                     [*(updated[c] for c in COLUMNS), target])  # fmt: skip
        after = conn.execute("SELECT to_jsonb(e) FROM everything e WHERE id = %s", [target])
        expected[("update", target)] = (old, after.fetchone()[0])  # type: ignore[index]
        conn.execute("DELETE FROM everything WHERE id = %s", [target])
        expected[("delete", target)] = (expected[("update", target)][1], None)
    drain(typed)
    got = {(r["operation"], int(r["entity_id"])): (r["old"], r["new"])
           for r in records(pg) if int(r["entity_id"]) in ids}  # fmt: skip
    assert set(got) == set(expected)
    for key, (old_expected, new_expected) in expected.items():
        old_got, new_got = got[key]
        assert _diff(new_got, new_expected) == {}, key
        assert _diff(old_got, old_expected) == {}, key


def _diff(got: dict[str, Any] | None, expected: dict[str, Any] | None) -> dict[str, Any]:
    """Columns whose values differ, as {column: (got, expected)}; {} when equal."""
    if got is None or expected is None:
        return {} if got == expected else {"(row)": (got, expected)}
    return {
        k: (got.get(k, "<missing>"), expected.get(k, "<missing>"))
        for k in set(got) | set(expected)
        if got.get(k, "<missing>") != expected.get(k, "<missing>")
    }


def test_session_settings_of_the_comparison_are_the_daemons() -> None:
    # The comparison above is only meaningful in the daemon's own session settings.
    assert "TimeZone=UTC" in SESSION_OPTIONS and "DateStyle=ISO" in SESSION_OPTIONS


_unused = uuid
