"""``python -m bench`` refuses bad flags with one line and exit 2, before it starts anything."""

from __future__ import annotations

import pytest

from bench.cli import main


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--compare", "no-such-ref-anywhere", "write"], "not a commit of this repository"),
        (["--write-rate", "-3", "--compare", "HEAD", "write"], "--write-rate -3: give a number"),
        (["--write-rounds", "abc", "write"], "--write-rounds abc: give an integer"),
        (["--latency-loads", "1,x", "latency"], "give comma-separated integers"),
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
