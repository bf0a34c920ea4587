"""DSN masking: a message about a DSN never carries its password, parsable or not."""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.dsn import UNPARSABLE, connect_failure, dsn_problem, mask_secrets


# (no NUL: a DSN is a C string, libpq never sees what follows one)
@given(
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=6
    )
)
def test_a_libpq_parse_error_never_carries_the_password(password: str) -> None:
    dsn = f"host=127.0.0.1 port=1 password={password} connect_timeout=1"
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        assert dsn_problem(dsn) == UNPARSABLE
        assert connect_failure(exc, dsn) == UNPARSABLE
    else:
        parsed = psycopg.conninfo.conninfo_to_dict(dsn)["password"]
        message = f"FATAL: something about {password} and {parsed}"
        masked = mask_secrets(message, dsn)
        assert password not in masked and str(parsed) not in masked


def test_a_parsable_dsn_keeps_the_rest_of_the_message() -> None:
    dsn = "host=db user=app password='two words'"
    assert mask_secrets('role "app" said two words', dsn) == 'role "app" said ***'
    assert dsn_problem(dsn) is None


@pytest.mark.parametrize("dsn", ["password=a b", "postgresql://u:p@[::1", "host='open"])
def test_unparsable_dsns_are_named_without_being_quoted(dsn: str) -> None:
    assert dsn_problem(dsn) == UNPARSABLE
