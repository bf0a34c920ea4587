"""cdc.logs: passwords never reach the output, JSON lines carry the event and its extras."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import redirect_stderr

import pytest

from cdc.logs import JsonFormatter, SecretFilter, configure_logging, mask_secrets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host=db password=hunter2 user=cdc", "host=db password=*** user=cdc"),
        ("host=db password = 'hun ter2' user=cdc", "host=db password = *** user=cdc"),
        ("PGPASSWORD=hunter2 cdc run", "PGPASSWORD=*** cdc run"),
        ("postgresql://cdc:hunter2@db:5432/x", "postgresql://cdc:***@db:5432/x"),
        ("postgres://cdc:p%40ss@db/x?sslmode=require", "postgres://cdc:***@db/x?sslmode=require"),
        (
            "postgresql://db/x?user=cdc&password=hunter2&sslmode=require",
            "postgresql://db/x?user=cdc&password=***&sslmode=require",
        ),
        ('{"user": "cdc", "password": "hunter2"}', '{"user": "cdc", "password": "***"}'),
        (
            "password authentication failed for user cdc",
            "password authentication failed for user cdc",
        ),
        ("postgresql://db/x", "postgresql://db/x"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_mask_secrets_hides_passwords_in_dsns_and_urls(text: str, expected: str) -> None:
    assert mask_secrets(text) == expected


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretFilter())
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("cdc.test_logs")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        yield log, stream
    finally:
        log.removeHandler(handler)
        log.propagate = True


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_dsn_in_the_arguments_of_a_message_is_masked(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.info("connecting to %s", "host=db user=cdc password=hunter2")
    assert "hunter2" not in stream.getvalue()
    assert lines(stream)[0]["message"] == "connecting to host=db user=cdc password=***"


def test_a_dsn_in_an_extra_or_an_exception_is_masked(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    try:
        raise RuntimeError("cannot reach postgresql://cdc:hunter2@db/x")
    except RuntimeError:
        log.exception("failed", extra={"dsn": "password=hunter2 host=db"})
    assert "hunter2" not in stream.getvalue()
    (line,) = lines(stream)
    assert line["dsn"] == "password=*** host=db"
    assert "postgresql://cdc:***@db/x" in str(line["exc"])


def test_json_lines_carry_time_level_logger_message_and_extras(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.warning("slot %s lags", "s1", extra={"slot": "s1", "lag_bytes": 1024})
    (line,) = lines(stream)
    assert set(line) == {"ts", "level", "logger", "message", "slot", "lag_bytes"}
    assert line["level"] == "warning" and line["logger"] == "cdc.test_logs"
    assert line["message"] == "slot s1 lags"
    assert line["slot"] == "s1" and line["lag_bytes"] == 1024
    assert str(line["ts"]).endswith("+00:00")


def test_configure_logging_writes_one_line_per_event_in_either_format() -> None:
    root = logging.getLogger()
    level = root.level
    try:
        for fmt in ("human", "json"):
            err = io.StringIO()
            with redirect_stderr(err):
                configure_logging("info", fmt)  # type: ignore[arg-type]
                logging.getLogger("cdc.x").info("dsn %s", "postgresql://u:hunter2@h/d")
                logging.getLogger("cdc.x").debug("not shown at info")
            out = err.getvalue().splitlines()
            assert len(out) == 1, out
            assert "hunter2" not in out[0]
            if fmt == "json":
                assert json.loads(out[0])["message"] == "dsn postgresql://u:***@h/d"
            else:
                assert out[0].endswith("INFO cdc.x: dsn postgresql://u:***@h/d")
        ours = [h for h in root.handlers if type(h).__name__ == "_StderrHandler"]
        assert len(ours) == 1  # configuring again replaced the handler, not added one
    finally:
        handler = configure_logging("info", "human")
        root.removeHandler(handler)
        root.setLevel(level)
