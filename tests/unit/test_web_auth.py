"""Who may read through ``cdc serve``, and what its parameters accept: pure, no server."""

from __future__ import annotations

import logging
import stat
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cdc.config import settings_from_mapping
from cdc.errors import ConfigError
from cdc.web.auth import REFUSED_MEMORY, Sessions, TokenCheck, Verdict, hash_token, is_loopback
from cdc.web.guards import RefusalLog
from cdc.web.params import PageParams, StatsParams
from cdc.web.server import access_for

CONFIG: dict[str, Any] = {"source": {"dsn": "host=db"}, "tables": [{"name": "public.t"}]}


def test_a_hashed_token_accepts_the_token_only_and_fits_the_config() -> None:
    line = hash_token("s3cret", iterations=1000)
    check = TokenCheck(token_hash=line, derive_interval_s=0)
    assert not check.accepts("s3cre") and not check.accepts("s3cret ")
    assert check.accepts("s3cret") and check.accepts("s3cret")  # the second from memory
    assert not check.accepts("other")
    settings = settings_from_mapping({**CONFIG, "web": {"token_hash": line}}, env={})
    assert settings.web.token_hash == line
    with pytest.raises(ConfigError, match=r"web\.token_hash"):
        settings_from_mapping({**CONFIG, "web": {"token_hash": "s3cret"}}, env={})


def test_a_hashed_token_is_derived_at_most_once_per_interval_and_a_refusal_is_remembered() -> None:
    check = TokenCheck(token_hash=hash_token("s3cret", iterations=1000), derive_interval_s=5)
    assert check.verdict("stale", now=100) is Verdict.REFUSED and check.derivations == 1
    # a script retrying its stale token costs a hash, not a derivation, whenever it comes
    assert check.verdict("stale", now=100.1) is Verdict.REFUSED
    assert check.verdict("stale", now=200) is Verdict.REFUSED and check.derivations == 1
    # new candidates: one derivation per interval, the rest are not checked
    assert check.verdict("guess1", now=200) is Verdict.REFUSED and check.derivations == 2
    assert check.verdict("guess2", now=201) is Verdict.BUSY
    assert check.verdict("s3cret", now=204.9) is Verdict.BUSY  # the right one waits too
    assert check.retry_after_s(now=204.2) == 1 and check.retry_after_s(now=201) == 4
    assert not check.accepts("s3cret", now=204.9) and check.derivations == 2
    assert check.verdict("s3cret", now=205) is Verdict.ACCEPTED and check.derivations == 3
    # once the token was seen, every check is a hash: never busy, never derived
    assert check.verdict("guess3", now=205) is Verdict.REFUSED
    assert check.verdict("s3cret", now=205) is Verdict.ACCEPTED and check.derivations == 3


@pytest.mark.parametrize("token", ["s3cret", "wrong"])
def test_requests_with_the_token_being_checked_wait_for_its_answer_not_a_429(token: str) -> None:
    # scripts started together with one token: one derivation, the same answer for all
    check = TokenCheck(token_hash=hash_token("s3cret", iterations=300_000), derive_interval_s=60)
    verdicts: list[Verdict] = []
    first = threading.Thread(target=lambda: verdicts.append(check.verdict(token)))
    first.start()
    while check.derivations == 0:  # the first request is deriving
        time.sleep(0.001)
    others = [check.verdict(token) for _ in range(3)]
    first.join()
    expected = Verdict.ACCEPTED if token == "s3cret" else Verdict.REFUSED
    assert verdicts == [expected] and others == [expected] * 3
    assert check.derivations == 1
    assert check.verdict("another") is (
        Verdict.REFUSED if expected is Verdict.ACCEPTED else Verdict.BUSY
    )


def test_the_refused_tokens_remembered_are_bounded() -> None:
    check = TokenCheck(token_hash=hash_token("s3cret", iterations=10), derive_interval_s=0)
    for number in range(REFUSED_MEMORY + 1):
        assert check.verdict(f"wrong{number}", now=0) is Verdict.REFUSED
    assert check.derivations == REFUSED_MEMORY + 1
    check.verdict(f"wrong{REFUSED_MEMORY}", now=0)  # the newest: remembered
    assert check.derivations == REFUSED_MEMORY + 1
    check.verdict("wrong0", now=0)  # the oldest: forgotten, derived again
    assert check.derivations == REFUSED_MEMORY + 2


def test_a_token_in_clear_is_never_busy_and_never_derived() -> None:
    check = TokenCheck(token="t0k")
    verdicts = {check.verdict(f"wrong{n}", now=0) for n in range(50)}
    assert verdicts == {Verdict.REFUSED} and check.accepts("t0k", now=0)
    assert check.derivations == 0


@given(
    st.lists(
        st.tuples(st.sampled_from(["right", "a", "b", "c", "d"]), st.floats(0, 3)),
        max_size=40,
    )
)
def test_any_sequence_of_tokens_derives_at_most_once_per_interval_and_never_lies(
    attempts: list[tuple[str, float]],
) -> None:
    check = TokenCheck(token_hash=hash_token("right", iterations=1), derive_interval_s=2)
    now = 0.0
    for candidate, pause in attempts:
        now += pause
        verdict = check.verdict(candidate, now=now)
        assert verdict is not (Verdict.ACCEPTED if candidate != "right" else Verdict.REFUSED)
    # one derivation at the start, then at most one per whole interval
    assert check.derivations <= 1 + now // 2


def test_a_session_cookie_is_valid_until_it_expires_and_not_if_altered() -> None:
    sessions = Sessions(lifetime_s=60)
    cookie = sessions.issue(now=1000)
    assert sessions.valid(cookie, now=1059)
    assert not sessions.valid(cookie, now=1061)
    expiry, signature = cookie.split(".")
    assert not sessions.valid(f"{int(expiry) + 3600}.{signature}", now=1000)
    assert not Sessions(lifetime_s=60).valid(cookie, now=1000)  # another server's key


def test_serving_beyond_loopback_needs_a_token_given_by_the_operator() -> None:
    settings = settings_from_mapping(CONFIG, env={})
    with pytest.raises(ConfigError, match=r"refusing to serve on 0\.0\.0\.0 without a token"):
        access_for(settings, host="0.0.0.0", env={})
    given_token = access_for(settings, host="0.0.0.0", env={"CDC_WEB_TOKEN": "t0k"})
    assert given_token.tokens.accepts("t0k") and given_token.token_file is None
    hashed = settings_from_mapping(
        {**CONFIG, "web": {"token_hash": hash_token("x", iterations=10)}}
    )
    assert access_for(hashed, host="10.1.2.3", env={}).tokens.accepts("x")


def test_on_loopback_without_a_token_one_is_made_up_into_a_private_file() -> None:
    settings = settings_from_mapping(CONFIG, env={})
    access = access_for(settings, env={})
    assert access.host == "127.0.0.1" and access.token_file is not None
    assert stat.S_IMODE(access.token_file.stat().st_mode) == 0o600
    token = access.token_file.read_text().strip()
    assert len(token) >= 24 and access.tokens.accepts(token)
    access.token_file.unlink()
    access.token_file.parent.rmdir()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("10.0.0.1", False), ("::", False), ("example.org", False)],
)  # fmt: skip
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@given(st.dictionaries(st.sampled_from(list(PageParams.model_fields)), st.text(max_size=40)))
def test_any_page_parameters_either_validate_or_fail_validation(params: dict[str, str]) -> None:
    """Never another exception: the app answers a ValidationError with a 400."""
    try:
        parsed = PageParams.model_validate(params)
    except ValidationError:
        return
    from datetime import UTC, datetime

    parsed.record_filter(datetime(2026, 1, 1, tzinfo=UTC))
    assert parsed.cursor is None or str(parsed.cursor)


def test_stats_windows_are_bounded() -> None:
    assert StatsParams.model_validate({"since": "30d"}).length.days == 30
    for bad in ("0m", "500d", "soon"):
        with pytest.raises(ValidationError):
            StatsParams.model_validate({"since": bad})


def test_cdc_serve_refuses_a_public_address_without_a_token_in_one_line(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from cdc.cli import main

    config = tmp_path / "cdc.toml"
    config.write_text('[source]\ndsn = "host=db"\n[[tables]]\nname = "public.t"\n')
    result = CliRunner().invoke(
        main, ["--config", str(config), "serve", "--host", "0.0.0.0"], env={"CDC_WEB_TOKEN": ""}
    )
    assert result.exit_code == 4
    assert result.output.strip().splitlines() == [
        "error: refusing to serve on 0.0.0.0 without a token: set CDC_WEB_TOKEN or [web] "
        'token_hash ("cdc serve --hash-token" makes one), or serve on 127.0.0.1'
    ]


def test_cdc_serve_hash_token_prints_a_config_line_that_accepts_the_token(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from cdc.cli import main

    config = tmp_path / "cdc.toml"
    config.write_text('[source]\ndsn = "host=db"\n[[tables]]\nname = "public.t"\n')
    result = CliRunner().invoke(
        main, ["--config", str(config), "serve", "--hash-token"], input="correct horse\n"
    )
    assert result.exit_code == 0, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith('token_hash = "pbkdf2_sha256$') and "correct horse" not in line
    assert TokenCheck(token_hash=line.split('"')[1]).accepts("correct horse")


def test_live_records_write_times_as_postgresql_json_does() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from cdc.web.models import iso

    moment = datetime(2026, 12, 4, 10, 0, 0, 120000, tzinfo=UTC)
    assert iso(moment) == "2026-12-04T10:00:00.12+00:00"
    assert iso(moment.replace(microsecond=0)) == "2026-12-04T10:00:00+00:00"
    assert iso(moment.replace(microsecond=5)) == "2026-12-04T10:00:00.000005+00:00"
    east = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert iso(east) == "2026-12-04T15:30:00.12+05:30"


def test_wrong_tokens_leave_one_log_line_per_interval_with_the_count_and_the_last_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals = RefusalLog(interval_s=60)
    with caplog.at_level(logging.WARNING, logger="cdc.web"):
        refusals.note("10.0.0.5", now=1000)  # the first: at once
        for second in range(1, 31):
            refusals.note("10.0.0.6", now=1000 + second)
        refusals.note("10.0.0.7", now=1061)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("refused 1 request(s) for a wrong token, the last from 10.0.0.5")
    assert lines[1].startswith(
        "refused 31 request(s) for a wrong token in the last 61 s, the last from 10.0.0.7"
    )
