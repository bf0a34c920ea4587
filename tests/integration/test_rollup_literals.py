"""The rollup counts reach the server as array literals built by the daemon
(:func:`cdc.pipeline.rollups.array_literal`): whatever the text (quotes, backslashes, braces,
commas, spaces, NULL-looking words, unicode), the server reads back exactly the values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc.pipeline.rollups import array_literal
from tests.fix_pg import PgDatabase

_TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))
_WORDS = st.lists(
    st.one_of(_TEXT, st.sampled_from(["", "NULL", "null", " a ", '"', "\\", "{", "}", ",", "a,b"])),
    max_size=12,
)
_TIMES = st.lists(
    st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ).map(lambda t: t.replace(second=0, microsecond=0)),
    max_size=8,
)
_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_SETTINGS
@given(words=_WORDS, times=_TIMES, counts=st.lists(st.integers(1, 2**62), max_size=8))
def test_any_text_times_and_counts_come_back_as_they_were_sent(
    pg: PgDatabase, words: list[str], times: list[datetime], counts: list[int]
) -> None:
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT %s::text[], %s::timestamptz[], %s::bigint[]",
            (array_literal(words), array_literal(times), array_literal(counts)),
        ).fetchone()
    assert row is not None
    assert row[0] == words
    assert row[1] == times
    assert row[2] == counts


def test_an_offset_time_is_read_as_the_same_instant(pg: PgDatabase) -> None:
    at = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'Asia/Kathmandu'")  # whatever the session's zone
        row = conn.execute("SELECT %s::timestamptz[]", (array_literal([at]),)).fetchone()
    assert (
        row is not None
        and row[0] == [at]
        and row[0][0].utcoffset() == timedelta(hours=5, minutes=45)
    )
