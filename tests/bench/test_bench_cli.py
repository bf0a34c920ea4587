"""``python -m bench`` refuses bad flags with one line and exit 2, before it starts anything."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.server import BenchServer


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--compare", "no-such-ref-anywhere", "write"], "not a commit of this repository"),
        (["--write-rate", "-3", "--compare", "HEAD", "write"], "--write-rate -3: give a number"),
        (["--write-rounds", "abc", "write"], "--write-rounds abc: give an integer"),
        (["--latency-loads", "1,x", "latency"], "give comma-separated integers"),
        (["--locale", "xx_NOPE.UTF-8", "write"], "--locale xx_NOPE.UTF-8: this machine has no"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out = capsys.readouterr()
    assert said in out.out
    assert len(out.out.strip().splitlines()) == 1
    assert "Traceback" not in out.out + out.err


def test_the_throwaway_cluster_is_made_in_the_locale_asked_for() -> None:
    """``--locale``: a production database is usually in the host's locale, not C."""
    server = BenchServer(locale="C.UTF-8").start()
    try:
        assert server.settings()["database collation"] == "C.UTF-8"
        with server.connect() as conn:  # and every database made after it
            conn.execute("CREATE DATABASE later")
            row = conn.execute("SELECT datcollate FROM pg_database WHERE datname = 'later'")
            assert row.fetchone() == ("C.UTF-8",)
    finally:
        server.stop()
