"""The fuzzing command, short: 100k mutated real messages and random bytes; only DecodeError
may escape, nothing hangs, memory does not grow. `python -m tools.fuzz_decoder` runs 1,000,000."""

from __future__ import annotations

import pytest

from tools.fuzz_decoder import main


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzing_the_decoder_finds_nothing_but_decode_errors(
    seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--count", "50000", "--seed", str(seed)]) == 0
    out = capsys.readouterr().out
    assert "nothing else" in out and "50000 inputs" in out
