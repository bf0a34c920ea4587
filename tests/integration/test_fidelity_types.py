"""Differential test: a record's ``new``/``old``/``changes`` equal PostgreSQL's own ``to_jsonb``.

Hypothesis draws rows over many column types; each row is written to a real table, ``to_jsonb``
of the row is read in a session with the daemon's settings, and the drained record must be
equal, for inserts, for updates (old, new and the diff) and for deletes (old).

Types of extensions too: contrib's hstore (rendered through its cast to json, by the daemon),
citext and ltree (their text) on every server that ships them; PostGIS geometry and geography
on the machine's server (scripts/bootstrap.sh installs it; geometry's cast to json is rendered
by the server); pgvector's vector where a server ships it; a user's own cast to json on an
enum (rendered by the server) and a cast to jsonb only, which to_jsonb ignores, everywhere.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types import TypeInfo
from psycopg.types.hstore import register_hstore
from psycopg.types.json import Json, Jsonb

from cdc.config import Settings
from cdc.control.setup import setup
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
-- to_jsonb renders a type through its cast to json: a user's own cast too (by the server)
CREATE TYPE grade AS ENUM ('low', 'high', 'it''s "top"');
CREATE FUNCTION grade_json(grade) RETURNS json LANGUAGE sql IMMUTABLE
    AS $$ SELECT json_build_object('grade', $1::text, 'rank', array_position(enum_range($1), $1),
                                   'at', '2024-05-06 07:08:09+02'::timestamptz) $$;
CREATE CAST (grade AS json) WITH FUNCTION grade_json(grade);
CREATE DOMAIN grade_d AS grade;
CREATE TYPE graded AS (g grade, n integer);
-- ... but only a cast to json: one to jsonb alone is ignored (its text, a string)
CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE FUNCTION floatrange_jsonb(floatrange) RETURNS jsonb LANGUAGE sql IMMUTABLE
    AS $$ SELECT '[1]'::jsonb $$;
CREATE CAST (floatrange AS jsonb) WITH FUNCTION floatrange_jsonb(floatrange);
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
    t_point     point,
    t_box_arr   box[],
    t_grade     grade,
    t_grade_d   grade_d,
    t_grade_arr grade[],
    t_graded    graded,
    t_floatrange floatrange
);
"""

COLUMNS = [
    "t_text", "t_varchar", "t_char", "t_int2", "t_int4", "t_int8", "t_numeric", "t_float4",
    "t_float8", "t_bool", "t_json", "t_jsonb", "t_uuid", "t_date", "t_time", "t_timetz",
    "t_ts", "t_tstz", "t_interval", "t_bytea", "t_inet", "t_cidr", "t_macaddr", "t_money",
    "t_enum", "t_posint", "t_amount", "t_label", "t_int_arr", "t_text_2d", "t_num_arr",
    "t_jsonb_arr", "t_enum_arr", "t_pair", "t_pair_arr", "t_int4range", "t_tstzrange",
    "t_point", "t_box_arr", "t_grade", "t_grade_d", "t_grade_arr", "t_graded", "t_floatrange",
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
grades = st.sampled_from(["low", "high", 'it\'s "top"'])
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
        "t_box_arr": draw(nullable(st.sampled_from(["{(1,1),(0,0);(3,2),(-1,-1.5)}", "{}",
                                                    "{NULL;(0,0),(0,0)}"]))),
        "t_grade": draw(nullable(grades)),
        "t_grade_d": draw(nullable(grades)),
        "t_grade_arr": draw(nullable(st.lists(nullable(grades), max_size=3))),
        "t_graded": draw(nullable(st.tuples(nullable(grades), nullable(st.integers(-9, 9)))
                                  .map(pair_literal))),
        "t_floatrange": draw(nullable(st.sampled_from(["[1.5,2)", "empty", "(,3]"]))),
    }  # fmt: skip


CASTS = {"t_date": "date", "t_ts": "timestamp", "t_money": "money", "t_enum": "mood",
         "t_pair": "pair", "t_pair_arr": "pair[]", "t_int4range": "int4range",
         "t_tstzrange": "tstzrange", "t_point": "point", "t_macaddr": "macaddr",
         "t_enum_arr": "mood[]", "t_text_2d": "text[]", "t_num_arr": "numeric[]",
         "t_box_arr": "box[]", "t_grade": "grade", "t_grade_d": "grade_d", "t_grade_arr": "grade[]",
         "t_graded": "graded", "t_floatrange": "floatrange"}  # fmt: skip
INSERT = "INSERT INTO everything (id, {cols}) VALUES (%s, {vals})".format(
    cols=", ".join(COLUMNS),
    vals=", ".join(f"%s::{CASTS[c]}" if c in CASTS else "%s" for c in COLUMNS),
)


def set_up(pg: PgDatabase, schema: str, table: str) -> Settings:
    """The schema created, the table published, the slot made: what the daemon drains."""
    pg.execute(schema)
    settings_ = make_settings(pg, [{"name": table}], redaction={"patterns": []})
    setup(settings_)
    return settings_


@pytest.fixture
def typed(pg: PgDatabase) -> Settings:
    return set_up(pg, SCHEMA, "public.everything")


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(rows(), min_size=1, max_size=6), updated=rows())
def test_new_and_old_equal_to_jsonb_for_every_type(pg: PgDatabase, typed: Any,
                                                    batch: list[dict[str, Any]],
                                                    updated: dict[str, Any]) -> None:  # fmt: skip
    def write(conn: psycopg.Connection[Any], row_id: int, row: dict[str, Any]) -> None:
        conn.execute(INSERT, [row_id, *(row[c] for c in COLUMNS)])

    sets = ", ".join(f"{c} = %s::{CASTS[c]}" if c in CASTS else f"{c} = %s" for c in COLUMNS)

    def update(conn: psycopg.Connection[Any], row_id: int, row: dict[str, Any]) -> None:
        conn.execute(f"UPDATE everything SET {sets} WHERE id = %s",
                     [*(row[c] for c in COLUMNS), row_id])  # fmt: skip

    assert_records_equal_to_jsonb(pg, typed, "everything", write, update, batch, updated)


Write = Callable[[psycopg.Connection[Any], int, dict[str, Any]], None]


def assert_records_equal_to_jsonb(
    pg: PgDatabase,
    settings_: Any,
    table: str,
    write: Write,
    update: Write,
    batch: list[dict[str, Any]],
    updated: dict[str, Any],
    prepare: Callable[[psycopg.Connection[Any]], None] | None = None,
) -> None:
    """Insert the batch, update its first row to `updated` and delete it; the drained records'
    old, new and changes must be what to_jsonb says, in the daemon's session settings."""
    expected: dict[tuple[str, int], tuple[Any, Any]] = {}
    row_json = f"SELECT to_jsonb(the_row) FROM {table} the_row WHERE id = %s"
    with pg.connect(options=SESSION_OPTIONS) as conn:
        if prepare is not None:
            prepare(conn)
        base = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]  # type: ignore[index]
        ids = []
        for offset, row in enumerate(batch, 1):
            row_id = base + offset
            ids.append(row_id)
            write(conn, row_id, row)
            new = conn.execute(row_json, [row_id]).fetchone()[0]  # type: ignore[index]
            expected[("insert", row_id)] = (None, new)
        target = ids[0]
        old = conn.execute(row_json, [target]).fetchone()[0]  # type: ignore[index]
        update(conn, target, updated)
        after = conn.execute(row_json, [target]).fetchone()[0]  # type: ignore[index]
        expected[("update", target)] = (old, after)
        conn.execute(f"DELETE FROM {table} WHERE id = %s", [target])
        expected[("delete", target)] = (after, None)
    drain(settings_)
    got = {(r["operation"], int(r["entity_id"])): r
           for r in records(pg) if int(r["entity_id"]) in ids}  # fmt: skip
    assert set(got) == set(expected)
    for key, (old_expected, new_expected) in expected.items():
        assert _diff(got[key]["new"], new_expected) == {}, key
        assert _diff(got[key]["old"], old_expected) == {}, key
    old, new = expected[("update", target)]
    changes = got[("update", target)]["changes"] or {}
    differing = {c for c in old if old[c] != new[c]}
    assert differing <= set(changes), differing - set(changes)
    for column, diff in changes.items():
        assert diff == {"old": old[column], "new": new[column]}, column


def _diff(got: dict[str, Any] | None, expected: dict[str, Any] | None) -> dict[str, Any]:
    """Columns whose values differ, as {column: (got, expected)}; {} when equal."""
    if got is None or expected is None:
        return {} if got == expected else {"(row)": (got, expected)}
    return {
        k: (got.get(k, "<missing>"), expected.get(k, "<missing>"))
        for k in set(got) | set(expected)
        if got.get(k, "<missing>") != expected.get(k, "<missing>")
    }


# -- types of extensions ---------------------------------------------------------------------

CONTRIB_SCHEMA = """
CREATE EXTENSION hstore;
CREATE EXTENSION citext;
CREATE EXTENSION ltree;
CREATE DOMAIN attrs AS hstore;
CREATE DOMAIN email AS citext;
CREATE TYPE tagged AS (label citext, attrs hstore, path ltree, at timestamptz);
CREATE TABLE extended (
    id        bigint PRIMARY KEY,
    h         hstore,
    h_dom     attrs,
    h_arr     hstore[],
    h_dom_arr attrs[],
    ci        citext,
    ci_dom    email,
    ci_arr    citext[],
    lt        ltree,
    lt_arr    ltree[],
    t         tagged,
    t_arr     tagged[]
);
"""

# hstore keys and values: what its text output must escape (quotes, backslashes), what looks
# like its syntax (=>, NULL, commas, spaces), unicode, JSON's escapes, the empty string
hstore_text = st.text(
    st.sampled_from(['"', "\\", "=", ">", ",", " ", "N", "U", "L", "\n", "\t", "\x01", "é", "€",
                     "😀", "a", "z", "{", "}"])
    | st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=8,
)  # fmt: skip
hstores = st.dictionaries(hstore_text, st.none() | hstore_text | st.just("NULL"), max_size=5)
ltrees = st.from_regex(r"[A-Za-z0-9_]{1,6}(\.[A-Za-z0-9_]{1,6}){0,3}", fullmatch=True)
tags = st.tuples(nullable(text), nullable(hstores), nullable(ltrees), nullable(aware))


@st.composite
def extended_rows(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "h": draw(nullable(hstores)),
        "h_dom": draw(nullable(hstores)),
        "h_arr": draw(nullable(st.lists(nullable(hstores), max_size=3))),
        "h_dom_arr": draw(nullable(st.lists(hstores, min_size=1, max_size=2))),
        "ci": draw(nullable(text)),
        "ci_dom": draw(nullable(text)),
        "ci_arr": draw(nullable(st.lists(nullable(text), max_size=3))),
        "lt": draw(nullable(ltrees)),
        "lt_arr": draw(nullable(st.lists(ltrees, max_size=3))),
        "t": draw(nullable(tags)),
        "t_arr": draw(nullable(st.lists(tags, min_size=1, max_size=3))),
    }


# psycopg adapts dicts as hstore (registered per connection); the rest is cast from text, and
# a composite is built with ROW() so that its hstore field needs no hand-written literal
EXTENDED_VALUES = {
    "h": "%s", "h_dom": "%s::attrs", "h_arr": "%s::hstore[]", "h_dom_arr": "%s::attrs[]",
    "ci": "%s::citext", "ci_dom": "%s::email", "ci_arr": "%s::citext[]", "lt": "%s::ltree",
    "lt_arr": "%s::ltree[]",
    "t": "CASE WHEN %s THEN ROW(%s::citext, %s::hstore, %s::ltree, %s::timestamptz)::tagged END",
    "t_arr": "(SELECT array_agg(ROW(l, a, p, w)::tagged ORDER BY n) FROM unnest("
             "%s::citext[], %s::hstore[], %s::ltree[], %s::timestamptz[]) WITH ORDINALITY"
             " AS x(l, a, p, w, n))",
}  # fmt: skip


def row_writers(table: str, values: dict[str, str]) -> tuple[Write, Write]:
    """Insert and update statements from {column: SQL expression of its parameters}. A
    composite's expression takes a presence flag and its fields (the row holds a tuple); an
    array of composites one array per field (the row holds a list of tuples)."""
    columns = ", ".join(values)
    insert = f"INSERT INTO {table} (id, {columns}) VALUES (%s, {', '.join(values.values())})"
    sets = ", ".join(f"{column} = {expression}" for column, expression in values.items())

    def params(row: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for column, expression in values.items():
            value, count = row[column], expression.count("%s")
            if count == 1:
                out.append(value)
            elif expression.startswith("CASE"):
                out.extend([value is not None, *(value or (None,) * (count - 1))])
            else:
                out.extend(None if value is None else [v[i] for v in value] for i in range(count))
        return out

    def write(conn: psycopg.Connection[Any], row_id: int, row: dict[str, Any]) -> None:
        conn.execute(insert, [row_id, *params(row)])

    def update(conn: psycopg.Connection[Any], row_id: int, row: dict[str, Any]) -> None:
        conn.execute(f"UPDATE {table} SET {sets} WHERE id = %s", [*params(row), row_id])

    return write, update


def _with_hstore(conn: psycopg.Connection[Any]) -> None:
    info = TypeInfo.fetch(conn, "hstore")
    assert info is not None
    register_hstore(info, conn)


@pytest.fixture
def extended(pg: PgDatabase) -> Settings:
    return set_up(pg, CONTRIB_SCHEMA, "public.extended")


@pytest.mark.extensions("hstore", "citext", "ltree")
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(extended_rows(), min_size=1, max_size=5), updated=extended_rows())
def test_hstore_citext_ltree_and_domains_arrays_composites_of_them_equal_to_jsonb(
    pg: PgDatabase, extended: Any, batch: list[dict[str, Any]], updated: dict[str, Any]
) -> None:
    write, update = row_writers("extended", EXTENDED_VALUES)
    assert_records_equal_to_jsonb(pg, extended, "extended", write, update, batch, updated,
                                  prepare=_with_hstore)  # fmt: skip


POSTGIS_SCHEMA = """
CREATE EXTENSION postgis;
CREATE EXTENSION hstore;
CREATE DOMAIN place AS geometry;
CREATE TYPE site AS (name text, at geometry, attrs hstore, seen timestamptz);
CREATE TABLE spatial (
    id      bigint PRIMARY KEY,
    geom    geometry,
    geom_pt geometry(Point, 4326),
    geog    geography,
    g_dom   place,
    g_arr   geometry[],
    geog_arr geography[],
    site    site,
    sites   site[],
    plain   text
);
"""

coordinates = st.floats(-1e6, 1e6, allow_nan=False, width=32)
lon_lat = st.tuples(st.floats(-180, 180, allow_nan=False), st.floats(-90, 90, allow_nan=False))
geometries = st.one_of(
    st.tuples(coordinates, coordinates).map(lambda p: f"POINT({p[0]!r} {p[1]!r})"),
    st.lists(st.tuples(coordinates, coordinates), min_size=2, max_size=4).map(
        lambda ps: "LINESTRING(" + ", ".join(f"{x!r} {y!r}" for x, y in ps) + ")"
    ),
    st.sampled_from([
        "POLYGON((0 0, 4 0, 4 4, 0 4, 0 0), (1 1, 2 1, 2 2, 1 1))",
        "SRID=4326;MULTIPOINT((1 2), (3 4))",
        "POINT Z (1 2 3)",
        "GEOMETRYCOLLECTION(POINT(1 2), LINESTRING(0 0, 1 1))",
        "POINT EMPTY",
        "SRID=3857;POINT(1e-9 123456789.123456)",
    ]),
)  # fmt: skip
geographies = lon_lat.map(lambda p: f"POINT({p[0]!r} {p[1]!r})")
points_4326 = lon_lat.map(lambda p: f"SRID=4326;POINT({p[0]!r} {p[1]!r})")
sites = st.tuples(nullable(text), nullable(geometries), nullable(hstores), nullable(aware))


@st.composite
def spatial_rows(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "geom": draw(nullable(geometries)),
        "geom_pt": draw(nullable(points_4326)),
        "geog": draw(nullable(geographies)),
        "g_dom": draw(nullable(geometries)),
        "g_arr": draw(nullable(st.lists(nullable(geometries), min_size=1, max_size=3))),
        "geog_arr": draw(nullable(st.lists(nullable(geographies), min_size=1, max_size=3))),
        "site": draw(nullable(sites)),
        "sites": draw(nullable(st.lists(sites, min_size=1, max_size=2))),
        "plain": draw(nullable(text)),
    }


SPATIAL_VALUES = {
    "geom": "%s::geometry", "geom_pt": "%s::geometry", "geog": "%s::geography",
    "g_dom": "%s::place",
    # PostGIS separates array elements with ':' (typdelim), not ','
    "g_arr": "(SELECT array_agg(g::geometry ORDER BY n) FROM unnest(%s::text[])"
             " WITH ORDINALITY AS x(g, n))",
    "geog_arr": "(SELECT array_agg(g::geography ORDER BY n) FROM unnest(%s::text[])"
                " WITH ORDINALITY AS x(g, n))",
    "site": "CASE WHEN %s THEN ROW(%s, %s::geometry, %s::hstore, %s::timestamptz)::site END",
    "sites": "(SELECT array_agg(ROW(l, g::geometry, a, w)::site ORDER BY n) FROM unnest("
             "%s::text[], %s::text[], %s::hstore[], %s::timestamptz[]) WITH ORDINALITY"
             " AS x(l, g, a, w, n))",
    "plain": "%s",
}  # fmt: skip


@pytest.fixture
def spatial(pg: PgDatabase) -> Settings:
    return set_up(pg, POSTGIS_SCHEMA, "public.spatial")


@pytest.mark.extensions("postgis", "hstore")
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(spatial_rows(), min_size=1, max_size=5), updated=spatial_rows())
def test_postgis_geometry_and_geography_equal_to_jsonb(
    pg: PgDatabase, spatial: Any, batch: list[dict[str, Any]], updated: dict[str, Any]
) -> None:
    # geometry has a cast to json (GeoJSON, rendered by the server); geography has none in
    # PostGIS 3 (its text, hex EWKB): the catalog tells them apart, not a list of names.
    write, update = row_writers("spatial", SPATIAL_VALUES)
    assert_records_equal_to_jsonb(pg, spatial, "spatial", write, update, batch, updated,
                                  prepare=_with_hstore)  # fmt: skip


VECTOR_SCHEMA = """
CREATE EXTENSION vector;
CREATE DOMAIN embedding AS vector(3);
CREATE TABLE embedded (
    id     bigint PRIMARY KEY,
    v      vector,
    v_dom  embedding,
    v_arr  vector[]
);
"""

vectors = st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=4)


def _vector(values: list[float] | None) -> str | None:
    return None if values is None else "[" + ",".join(repr(v) for v in values) + "]"


@st.composite
def vector_rows(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "v": _vector(draw(nullable(vectors))),
        "v_dom": _vector(draw(nullable(st.lists(st.floats(-9, 9, width=32), min_size=3,
                                                max_size=3)))),
        "v_arr": draw(nullable(st.lists(vectors.map(_vector), max_size=2))),
    }  # fmt: skip


@pytest.fixture
def embedded(pg: PgDatabase) -> Settings:
    return set_up(pg, VECTOR_SCHEMA, "public.embedded")


@pytest.mark.extensions("vector", optional=True)
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(vector_rows(), min_size=1, max_size=4), updated=vector_rows())
def test_pgvector_vectors_equal_to_jsonb(
    pg: PgDatabase, embedded: Any, batch: list[dict[str, Any]], updated: dict[str, Any]
) -> None:
    write, update = row_writers(
        "embedded", {"v": "%s::vector", "v_dom": "%s::embedding", "v_arr": "%s::vector[]"}
    )
    assert_records_equal_to_jsonb(pg, embedded, "embedded", write, update, batch, updated)


LARGE_SCHEMA = """
CREATE TYPE grade AS ENUM ('low', 'high');
CREATE FUNCTION grade_json(grade) RETURNS json LANGUAGE sql IMMUTABLE
    AS $$ SELECT json_build_object('grade', $1::text) $$;
CREATE CAST (grade AS json) WITH FUNCTION grade_json(grade);
CREATE TABLE graded_rows (id bigint PRIMARY KEY, g grade, gs grade[], note text);
"""


@pytest.mark.parametrize("decoding_work_mem", ["64MB", "64kB"], ids=["whole", "streamed"])
def test_a_large_transaction_of_server_rendered_values_is_recorded_exactly(
    pg: PgDatabase, decoding_work_mem: str
) -> None:
    # 2,500 changes: more than the daemon holds for one round trip (HELD_CHANGES), so the
    # values are rendered in chunks; with 64kB the server streams the transaction and the
    # daemon replays it at its commit
    pg.execute(LARGE_SCHEMA)
    settings_ = make_settings(pg, [{"name": "public.graded_rows"}], redaction={"patterns": []},
                              source={"decoding_work_mem": decoding_work_mem})  # fmt: skip
    setup(settings_)
    with pg.connect(options=SESSION_OPTIONS) as conn:
        with conn.transaction():
            conn.execute(
                "INSERT INTO graded_rows SELECT n, CASE WHEN n % 3 = 0 THEN NULL"
                " WHEN n % 2 = 0 THEN 'low' ELSE 'high' END::grade, ARRAY['low', NULL]::grade[],"
                " repeat('x', n % 40) FROM generate_series(1, 2500) AS n"
            )
            conn.execute("UPDATE graded_rows SET g = 'high' WHERE id <= 1200 AND g = 'low'")
        rows = conn.execute("SELECT id, to_jsonb(r) FROM graded_rows r").fetchall()
    stats = drain(settings_)
    expected = dict(rows)
    got = records(pg)
    inserts = {int(r["entity_id"]): r["new"] for r in got if r["operation"] == "insert"}
    updates = [r for r in got if r["operation"] == "update"]
    assert len(inserts) == 2500 and len(updates) == 400, stats
    assert len(got) == 2900
    assert (stats.streamed_transactions > 0) == (decoding_work_mem == "64kB")
    for record in updates:
        assert record["new"] == expected[int(record["entity_id"])]
        assert record["changes"] == {"g": {"old": {"grade": "low"}, "new": {"grade": "high"}}}
    for row_id, new in inserts.items():
        g = None if row_id % 3 == 0 else {"grade": "low" if row_id % 2 == 0 else "high"}
        assert new == {**expected[row_id], "g": g}


def test_session_settings_of_the_comparison_are_the_daemons() -> None:
    # The comparison above is only meaningful in the daemon's own session settings.
    assert "TimeZone=UTC" in SESSION_OPTIONS and "DateStyle=ISO" in SESSION_OPTIONS
