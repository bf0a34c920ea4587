"""Times and durations as the CLI and the API read them (cdc.store.model)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from cdc.store.model import parse_duration, parse_moment


@given(st.integers(min_value=0, max_value=10**30), st.sampled_from("smhdw"))
def test_a_duration_is_a_time_span_or_a_value_error_never_an_overflow(n: int, unit: str) -> None:
    """Any count of any unit, as typed on the command line or in a URL: a span of at most 100
    years, or the one-line ValueError the CLI and the API show; never an OverflowError
    (which was a traceback)."""
    text = f"{n}{unit}"
    now = datetime(2026, 12, 5, tzinfo=UTC)
    try:
        length = parse_duration(text)
    except ValueError as exc:
        assert "longer than 100 years" in str(exc)
        seconds = n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
        assert seconds > 36_525 * 86400
        return
    assert timedelta(0) <= length <= timedelta(days=36_525)
    assert parse_moment(text, now) == now - length
