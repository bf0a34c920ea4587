"""A search's page probed newest window first (cdc.store.search_windows) is exactly
the unwindowed query's page: same records, same order, same next cursor, whatever the times
of the records, the limit, the cursor, ``since``/``until`` and the other filters; and paging
through every match with the cursor neither skips nor repeats one.

Each hypothesis example writes its own records (the store is append-only), spread over
months around a base time, with a word of its own in their summaries: its search matches
them and nothing else in the store."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc.store import RecordCursor, RecordFilter, Store, open_store, queries
from cdc.store.search_windows import FIRST_SPAN, LAST_SPAN, relaxed_tsquery
from tests.fix_pg import PgDatabase
from tests.integration.helpers import setup_and_settings

pytestmark = pytest.mark.integration

DDL = "CREATE TABLE public.accounts (id bigint PRIMARY KEY, email text);"
TABLES = [{"name": "public.accounts", "entity_type": "account", "category": "accounts"}]
DAY = timedelta(days=1)
# where the windows' edges fall: the first, and the widths the density of matches asks for
WINDOWS = [FIRST_SPAN, 2 * DAY, 3 * DAY, 8 * DAY, LAST_SPAN]
_examples = itertools.count()
# LSNs from just below 1/0: text order and LSN order disagree across it
_lsns = itertools.count(0xFFFF_F000, 0x10)

# Times of records, as offsets back from the example's base: on and around the windows'
# edges (counted from the base, from a cursor, or from `until`), and anywhere in a year.
_EDGES = [k * w for w in WINDOWS for k in (1, 2)]
offsets = st.one_of(
    st.sampled_from([timedelta(0), *_EDGES, *(e + timedelta(microseconds=1) for e in _EDGES)]),
    st.integers(min_value=-3 * 3600, max_value=400 * 86400).map(lambda s: timedelta(seconds=s)),
    st.integers(min_value=0, max_value=30).map(lambda h: timedelta(hours=h)),
)


@dataclass(frozen=True)
class Written:
    word: str
    base: datetime  # the example's "now"; records up to 3 hours after it too
    times: list[datetime]


@pytest.fixture
def store(pg: PgDatabase) -> Iterator[Store]:
    settings = setup_and_settings(pg, DDL, TABLES)
    with open_store(settings) as opened:
        yield opened


def write(
    pg: PgDatabase, times: list[timedelta], *, per_transaction: list[int], base: datetime
) -> Written:
    """Records of a word of their own at ``base - offset``: one source transaction per time,
    with ``per_transaction`` records (cycled), half in category "a", half in "b"."""
    word = f"w{next(_examples)}x{base:%j}"
    rows: list[tuple[Any, ...]] = []
    written: list[datetime] = []
    for i, (offset, count) in enumerate(zip(times, itertools.cycle(per_transaction))):
        at = base - offset
        lsn = next(_lsns)
        for seq in range(count):
            rows.append(
                (
                    at, "insert", "account.insert", "a" if (i + seq) % 2 else "b",
                    "warning" if seq == 1 else "info", str(i), f"account {i} {word} created",
                    f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}", seq,
                )
            )  # fmt: skip
            written.append(at)
    with pg.connect() as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO activity.records (occurred_at, source, operation, action, category, "
            "severity, schema_name, table_name, entity_type, entity_id, summary, commit_lsn, seq) "
            "VALUES (%s, 'database', %s, %s, %s, %s, 'public', 'accounts', 'account', %s, %s, "
            "%s::pg_lsn, %s)",
            rows,
        )
    return Written(word, base, written)


def unwindowed(store: Store, f: RecordFilter, before: RecordCursor | None, limit: int) -> list[Any]:
    query, params = queries.page_query(
        store.table, store.schema, f, before=before, limit=limit, window=None
    )
    return store.fetch(query, params)


def as_rows(records: list[Any]) -> list[tuple[Any, ...]]:
    return [tuple(getattr(r, name) for name in queries.STORED_COLUMNS) for r in records]


# Searches of an example's word: alone, in phrases (relaxed for the index), with a negated
# phrase (not relaxed), one that matches nothing, an OR.
SEARCH_FORMS = [
    "{w}",
    '"{w} created"',
    '"account 1" {w}',
    '{w} -"account 2"',
    '"{w} deleted"',
    "{w} or nothing",
]
filters = st.fixed_dictionaries(
    {},
    optional={
        "category": st.sampled_from(["a", "b"]),
        "severities": st.sampled_from([("warning",), ("info", "warning")]),
        "since": st.one_of(offsets, st.sampled_from([DAY / 2, 3 * DAY, 30 * DAY, 200 * DAY])),
        "until": offsets,
    },
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    times=st.lists(offsets, min_size=0, max_size=60),
    per_transaction=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    limit=st.integers(1, 40),
    fields=filters,
    since_is_duration=st.booleans(),
    until_is_duration=st.booleans(),
    cursor_pick=st.one_of(st.none(), st.integers(0, 200), offsets),
    search_form=st.sampled_from(SEARCH_FORMS),
)
def test_a_windowed_page_is_the_unwindowed_page_for_any_times_limits_cursors_and_filters(
    pg: PgDatabase,
    store: Store,
    times: list[timedelta],
    per_transaction: list[int],
    limit: int,
    fields: dict[str, Any],
    since_is_duration: bool,
    until_is_duration: bool,
    cursor_pick: int | timedelta | None,
    search_form: str,
) -> None:
    base = store.now().astimezone(UTC)
    written = write(pg, times, per_transaction=per_transaction, base=base)
    # since/until: durations before the database's now() (--since 7d), or times
    for name, duration in (("since", since_is_duration), ("until", until_is_duration)):
        if name in fields and not duration:
            fields[name] = base - fields[name]
    f = RecordFilter(search=search_form.format(w=written.word), **fields)
    every = unwindowed(store, f, None, 10_000)
    before: RecordCursor | None = None
    if isinstance(cursor_pick, int) and every:  # a record's own cursor, as paging gives
        row = every[cursor_pick % len(every)]
        before = _cursor_of(row)
    elif isinstance(cursor_pick, timedelta):  # any position, as a typed --before gives
        before = RecordCursor(base - cursor_pick, "FFFFFFFF/0", 0)

    expected = unwindowed(store, f, before, limit)
    assert as_rows(store.records(f, before=before, limit=limit)) == expected
    # what the web API reads: the records as JSON, and their cursors (the next page's `after`)
    json_page = store.records_json(f, before=before, limit=limit)
    reference, params = queries.page_query(
        store.table, store.schema, f, before=before, limit=limit,
        columns=queries.columns_of(queries.api_columns()),
    )  # fmt: skip
    assert json_page == [(r[0], r[1]) for r in store.fetch(reference, params)]
    end = store.page_end(f, before=before, limit=limit)
    assert end == (_cursor_of(expected[-1]) if len(expected) == limit else None)
    if before is None:
        first, _live_from = store.first_page_json(f, limit=limit)
        assert first == json_page


def _index(name: str) -> int:
    return list(queries.STORED_COLUMNS).index(name)


def _lsn_of(row: tuple[Any, ...]) -> str:
    return str(row[_index("commit_lsn")])


def _seq_of(row: tuple[Any, ...]) -> int:
    return int(row[_index("seq")])


def _cursor_of(row: tuple[Any, ...]) -> RecordCursor:
    return RecordCursor(row[_index("occurred_at")], _lsn_of(row), _seq_of(row))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    times=st.lists(offsets, min_size=0, max_size=80),
    per_transaction=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    limit=st.integers(1, 25),
    category=st.sampled_from([None, "a"]),
    search_form=st.sampled_from(SEARCH_FORMS[:3]),
)
def test_paging_through_every_match_with_the_cursor_has_no_gap_and_no_repeat(
    pg: PgDatabase,
    store: Store,
    times: list[timedelta],
    per_transaction: list[int],
    limit: int,
    category: str | None,
    search_form: str,
) -> None:
    written = write(pg, times, per_transaction=per_transaction, base=store.now())
    f = RecordFilter(search=search_form.format(w=written.word), category=category)
    every = unwindowed(store, f, None, 10_000)
    seen: list[tuple[Any, ...]] = []
    before: RecordCursor | None = None
    while True:
        page = as_rows(store.records(f, before=before, limit=limit))
        seen += page
        end = store.page_end(f, before=before, limit=limit)
        if len(page) < limit:
            assert end is None
            break
        before = _cursor_of(page[-1])
        assert end == before
    assert seen == every
    if category is None and search_form == "{w}":
        assert len(seen) == len(written.times)


def test_a_search_over_sparse_matches_widens_to_the_unbounded_query_and_a_busy_one_stops_early(
    pg: PgDatabase, store: Store
) -> None:
    base = store.now()
    # two matches a year apart, far outside every window; thirty in the last hours; five a
    # day for ten days
    sparse = write(pg, [timedelta(days=100), timedelta(days=400)], per_transaction=[1], base=base)
    busy = write(pg, [timedelta(hours=h) for h in range(30)], per_transaction=[1], base=base)
    medium = write(
        pg, [timedelta(hours=1 + h * 24 / 5) for h in range(50)], per_transaction=[1], base=base
    )
    statements: list[str] = []
    real_fetch = store.fetch

    def counting(query: Any, params: Any = None, **options: Any) -> list[tuple[Any, ...]]:
        statements.append(query.as_string(store.conn))
        return real_fetch(query, params, **options)

    def probes() -> list[str]:
        found = [s for s in statements if "ORDER BY" in s]
        statements.clear()
        return found

    store.fetch = counting  # type: ignore[method-assign]
    found = store.records(RecordFilter(search=f'"{sparse.word} created"'), limit=10)
    assert [r.occurred_at for r in found] == [base - 100 * DAY, base - 400 * DAY]
    sent = probes()
    assert len(sent) == 2, "none in the first day: sparse, the unbounded query at once"
    assert "ts_match_vq" in sent[0], "a phrase: the index is asked the relaxed query"
    assert "date_trunc" not in sent[-1] and "ts_match_vq" not in sent[-1], "then unbounded"
    found = store.records(RecordFilter(search=busy.word), limit=10)
    assert len(found) == 10 and len(probes()) == 1, "the newest day holds the page"
    # five a day: the first day holds 5 of 10, the next window is three days (1.5 x 10 / 5)
    found = store.records(RecordFilter(search=medium.word), limit=10)
    sent = probes()
    assert len(found) == 10 and len(sent) == 2 and all("date_trunc" in s for s in sent)
    # --since 1d: no window is narrower, the unbounded query at once
    store.records(RecordFilter(search=sparse.word, since=DAY), limit=10)
    assert len(probes()) == 1
    # no search: the indexes read newest first already, one statement
    store.records(RecordFilter(category="accounts"), limit=10)
    assert len(probes()) == 1


@pytest.mark.parametrize(
    ("tsquery", "relaxed"),
    [
        ("'subscription' <-> '1'", "'subscription' & '1'"),
        ("'a' <-> 'b' & 'o' <2> 'neil' | 'c'", "'a' & 'b' & 'o' & 'neil' | 'c'"),
        ("( 'a' | 'b' ) <-> 'c'", "( 'a' | 'b' ) & 'c'"),
        ("'it''s' <-> 'x<->y'", "'it''s' & 'x<->y'"),  # a lexeme's text is left alone
        ("'plain' & 'words'", None),  # no phrase: the index answers it exactly already
        ("!( 'a' <-> 'b' ) & 'c'", None),  # relaxed, a negation would match fewer rows
        ("'a' <-> !'b'", None),
        ("", None),
        ("'unterminated", None),
    ],
)
def test_a_relaxed_tsquery_makes_each_phrase_an_and_and_never_narrows_a_query(
    tsquery: str, relaxed: str | None
) -> None:
    assert relaxed_tsquery(tsquery) == relaxed
