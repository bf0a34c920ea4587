"""Lsn: parses and prints WAL positions the way PostgreSQL's pg_lsn does ("16/B374D848")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.errors import ConfigError
from cdc.lsn import Lsn, format_lsn


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_every_lsn_prints_and_parses_back_to_the_same_value(value: int) -> None:
    text = format_lsn(value)
    assert Lsn.parse(text) == value
    assert str(Lsn.parse(text)) == text


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_printed_lsn_is_two_upper_case_hex_numbers_without_leading_zeros(value: int) -> None:
    hi, lo = format_lsn(value).split("/")
    assert hi == f"{value >> 32:X}"
    assert lo == f"{value & 0xFFFFFFFF:X}"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("16/B374D848", 0x16_B374D848),
        ("0/0", 0),
        ("0/1", 1),
        ("1/0", 2**32),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
        ("16/b374d848", 0x16_B374D848),
        ("00000016/0B374D84", 0x16_0B374D84),
    ],
)
def test_known_lsn_texts_parse_to_their_byte_positions(text: str, value: int) -> None:
    assert Lsn.parse(text) == value


def test_known_value_prints_as_postgresql_does() -> None:
    assert str(Lsn(0x16_B374D848)) == "16/B374D848"
    assert format_lsn(0x1_00000000) == "1/0"
    assert repr(Lsn(0x16_B374D848)) == "Lsn('16/B374D848')"


def test_lsn_is_an_int_so_differences_are_byte_counts() -> None:
    assert Lsn.parse("1/0") - Lsn.parse("0/FFFFFFFF") == 1
    assert Lsn.parse("0/10") < Lsn.parse("1/0")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "16",
        "16/",
        "/B374D848",
        "16B374D848",
        "G/0",
        "16/B374D84Z",
        "1/2/3",
        "100000000/0",  # high half over 32 bits
        "0/100000000",  # low half over 32 bits
        "-1/0",
        "0/-1",
        "16\\B374D848",
    ],
)
def test_malformed_lsn_text_raises_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="LSN"):
        Lsn.parse(text)


@pytest.mark.parametrize("text", ["0x16/0", "1_6/0", "+16/0", "16/ 0", "000000016/0"])
def test_lsn_forms_that_postgresql_rejects_are_rejected(text: str) -> None:
    with pytest.raises(ConfigError):
        Lsn.parse(text)
