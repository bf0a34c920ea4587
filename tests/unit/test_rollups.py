"""Rollups (cdc.pipeline.rollups) and the windows of ``cdc stats`` (cdc.store.stats): pure
functions,
no database. The counts must equal counting the records one by one, in whatever order and
batching they arrive."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from cdc.pipeline.activity import ActivityRecord
from cdc.pipeline.rollups import buckets, count_records, upsert_parameters
from cdc.store.stats import HOUR, MINUTE, Window, trend_of, window_for


def record(
    occurred_at: str,
    *,
    operation: str = "insert",
    category: str = "accounts",
    severity: str = "info",
    table: str | None = "accounts",
    source: str = "database",
) -> ActivityRecord:
    return ActivityRecord(
        occurred_at=occurred_at,
        source=source,
        operation=operation,
        action=f"account.{operation}",
        category=category,
        severity=severity,
        schema_name="public" if table else None,
        table_name=table,
        entity_type="account",
        entity_id="1",
        actor_id=None,
        context=None,
        old=None,
        new="{}",
        changes=None,
        summary=None,
        xid=1,
        commit_lsn="0/1",
        seq=0,
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_records_are_counted_in_their_utc_minute_and_hour_by_every_dimension() -> None:
    counts = count_records(
        [
            record("2026-11-26T10:15:59.999999+00:00"),
            record("2026-11-26T10:15:00+00:00"),
            record("2026-11-26T10:16:00+00:00"),
            record("2026-11-26T10:16:00+00:00", operation="delete", severity="warning"),
        ]
    )
    rest = ("database", "accounts", "info", "public", "accounts", "insert")
    assert counts.per_minute == {
        (at("2026-11-26T10:15:00+00:00"), *rest): 2,
        (at("2026-11-26T10:16:00+00:00"), *rest): 1,
        (
            at("2026-11-26T10:16:00+00:00"),
            "database",
            "accounts",
            "warning",
            "public",
            "accounts",
            "delete",
        ): 1,
    }
    assert counts.per_hour == {
        (at("2026-11-26T10:00:00+00:00"), *rest): 3,
        (
            at("2026-11-26T10:00:00+00:00"),
            "database",
            "accounts",
            "warning",
            "public",
            "accounts",
            "delete",
        ): 1,
    }


def test_a_commit_time_with_an_offset_is_bucketed_by_its_utc_hour() -> None:
    # 10:45 at +05:30 is 05:15 UTC: the hour is 05:00 UTC, not 10:00 or 05:30
    minute, hour = buckets("2026-11-26T10:45:30+05:30")
    assert minute == at("2026-11-26T05:15:00+00:00")
    assert hour == at("2026-11-26T05:00:00+00:00")
    assert hour.tzinfo is not None and hour.utcoffset() == timedelta(0)


def test_a_record_without_a_table_is_counted_under_empty_schema_and_table_names() -> None:
    counts = count_records([record("2026-11-26T10:00:00+00:00", table=None, source="app")])
    ((key, n),) = counts.per_hour.items()
    assert key[1:] == ("app", "accounts", "info", "", "", "insert") and n == 1


def test_no_records_make_no_counts() -> None:
    counts = count_records([])
    assert counts.per_minute == {} and counts.per_hour == {}


_records = st.lists(
    st.builds(
        record,
        st.datetimes(
            min_value=datetime(2026, 1, 1), max_value=datetime(2026, 1, 3), timezones=st.just(UTC)
        ).map(datetime.isoformat),
        operation=st.sampled_from(["insert", "update", "delete"]),
        severity=st.sampled_from(["info", "warning"]),
        table=st.sampled_from(["a", "b", None]),
    ),
    max_size=60,
)


@given(_records, st.integers(min_value=1, max_value=10))
def test_counting_in_chunks_and_adding_up_equals_counting_all_at_once(
    records: list[ActivityRecord], chunk: int
) -> None:
    # what the sink does with the chunks of a large transaction, one upsert each
    added: Counter[tuple[object, ...]] = Counter()
    for start in range(0, len(records), chunk):
        added.update(count_records(records[start : start + chunk]).per_hour)
    assert dict(added) == count_records(records).per_hour
    assert sum(count_records(records).per_minute.values()) == len(records)


_any_times = st.lists(
    st.builds(
        record,
        st.one_of(
            # as the mapper writes commit times (UTC, with or without microseconds) ...
            st.datetimes(
                min_value=datetime(1, 1, 2),
                max_value=datetime(9999, 12, 30),
                timezones=st.just(UTC),
            ).map(datetime.isoformat),
            # ... and what an application event may carry: other offsets, naive (UTC)
            st.datetimes(
                min_value=datetime(2000, 1, 1),
                max_value=datetime(2100, 1, 1),
                timezones=st.sampled_from(
                    [timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
                ),
            ).map(datetime.isoformat),
            st.datetimes(min_value=datetime(2000, 1, 1)).map(datetime.isoformat),
        ),
        severity=st.sampled_from(["info", "warning"]),
        table=st.sampled_from(["a", None]),
    ),
    max_size=40,
)


@given(_any_times)
def test_each_record_is_counted_in_the_minute_and_hour_its_time_parses_to(
    records: list[ActivityRecord],
) -> None:
    # count_records reads a UTC commit time's minute from its text without parsing it; the
    # result must be what parsing each record's time gives
    expected_minutes: Counter[tuple[object, ...]] = Counter()
    expected_hours: Counter[tuple[object, ...]] = Counter()
    for r in records:
        minute, hour = buckets(r.occurred_at)
        rest = (r.source, r.category, r.severity, r.schema_name or "", r.table_name or "")
        expected_minutes[(minute, *rest, r.operation)] += 1
        expected_hours[(hour, *rest, r.operation)] += 1
    counts = count_records(records)
    assert counts.per_minute == dict(expected_minutes)
    assert counts.per_hour == dict(expected_hours)


def test_a_short_window_is_whole_minutes_ending_with_the_current_minute() -> None:
    window = window_for(at("2026-11-26T10:30:45+00:00"), timedelta(minutes=15))
    assert window == Window(
        MINUTE,
        start=at("2026-11-26T10:16:00+00:00"),
        end=at("2026-11-26T10:31:00+00:00"),
        previous_start=at("2026-11-26T10:01:00+00:00"),
    )
    assert window.rollup_table == "activity_per_minute"


def test_a_day_window_is_whole_hours_and_the_previous_window_has_the_same_length() -> None:
    window = window_for(at("2026-11-26T10:30:00+02:00"), timedelta(hours=24))  # 08:30 UTC
    assert window.grain == HOUR and window.rollup_table == "activity_per_hour"
    assert window.end == at("2026-11-26T09:00:00+00:00")
    assert window.end - window.start == window.start - window.previous_start == timedelta(days=1)


def test_a_window_longer_than_a_week_is_whole_utc_days_from_the_per_day_rollups() -> None:
    window = window_for(at("2026-11-26T23:30:00-02:00"), timedelta(days=30))  # 27th, 01:30 UTC
    assert window.grain == timedelta(days=1) and window.rollup_table == "activity_per_day"
    assert window.end == at("2026-11-28T00:00:00+00:00")
    assert window.start == at("2026-10-29T00:00:00+00:00")
    assert window.end - window.start == window.start - window.previous_start
    assert window_for(at("2026-11-26T10:30:00+00:00"), timedelta(days=7)).grain == HOUR


def test_the_trend_is_zero_filled_and_merges_buckets_beyond_48_points() -> None:
    window = window_for(at("2026-11-26T10:30:00+00:00"), timedelta(days=7))  # 168 hours
    per_bucket = {window.start: 5, window.start + HOUR: 7, window.end - HOUR: 1}
    step, trend = trend_of(window, per_bucket)
    assert step == 4 * HOUR and len(trend) == 42
    assert trend[0] == (window.start, 12) and trend[-1] == (window.end - 4 * HOUR, 1)
    assert sum(n for _, n in trend) == 13 and sum(1 for _, n in trend if n == 0) == 40


_hostile_records = st.lists(
    st.builds(
        record,
        st.datetimes(
            min_value=datetime(2026, 1, 1),
            max_value=datetime(2026, 1, 1, 3),
            timezones=st.just(UTC),
        ).map(datetime.isoformat),
        # quotes and backslashes take the literal's escaping path, the rest its plain join
        category=st.one_of(st.sampled_from(["accounts", "finance"]), st.text(max_size=8)),
        source=st.sampled_from(["database", 'a "quoted" source', "back\\slash"]),
        table=st.sampled_from(["a", "b", None]),
    ),
    max_size=60,
)


@given(_hostile_records)
def test_the_flush_end_parameters_are_each_column_of_the_counts_as_an_array_literal(
    records: list[ActivityRecord],
) -> None:
    # upsert_parameters transposes the counts and quotes whole columns at once; the literal it
    # must give, element by element (the server reads such literals back exactly:
    # tests/integration/test_rollup_literals.py)
    def literal(values: list[object]) -> str:
        texts = [v.isoformat() if isinstance(v, datetime) else str(v) for v in values]
        escaped = ['"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"' for t in texts]
        return "{" + ",".join(escaped) + "}"

    counts = count_records(records)
    parameters = upsert_parameters(records)
    names = ("bucket", "source", "category", "severity", "schema_name", "table_name", "operation")
    assert len(parameters) == 2 * (len(names) + 1)
    for prefix, per in (("m_", counts.per_minute), ("h_", counts.per_hour)):
        keys = list(per)
        for index, name in enumerate(names):
            assert parameters[prefix + name] == literal([key[index] for key in keys])
        assert parameters[prefix + "n"] == literal(list(per.values()))
