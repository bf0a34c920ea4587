"""Human sizes and durations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.human import human_bytes, human_seconds


@pytest.mark.parametrize(
    ("n", "text"),
    [(None, "?"), (0, "0 bytes"), (1023, "1023 bytes"), (1024, "1.0 kB"),
     (1_363_149, "1.3 MB"), (50 * 1024**3, "50.0 GB"),
     (1024**4 - 1, "1.0 TB"), (3 * 1024**5, "3.0 PB")],
)  # fmt: skip
def test_sizes_read_like_pg_size_pretty(n: int | None, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (0, "0.0 s"), (2.1, "2.1 s"), (59.94, "59.9 s"), (59.96, "1.0 min"),
     (90, "1.5 min"),
     (3 * 3600, "3.0 h"), (2 * 86400, "2.0 d")],
)  # fmt: skip
def test_durations_carry_their_unit(seconds: float | None, text: str) -> None:
    assert human_seconds(seconds) == text


@given(st.integers(min_value=0, max_value=2**63))
def test_every_size_is_a_number_and_a_unit(n: int) -> None:
    number, unit = human_bytes(n).split(" ")
    assert float(number) >= 0 and unit in {"bytes", "kB", "MB", "GB", "TB", "PB"}
    assert unit == "bytes" or float(number) < 1024 or unit == "PB"
