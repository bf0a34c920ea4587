"""The error hierarchy and its exit codes: one table in cdc/errors.py, printed by ``cdc --help``."""

from __future__ import annotations

from click.testing import CliRunner

import cdc.errors
from cdc.cli.main import main
from cdc.errors import EXIT_CODES, CdcError


def _all_errors() -> list[type[CdcError]]:
    found: list[type[CdcError]] = []
    pending: list[type[CdcError]] = [CdcError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_class_exits_with_a_code_of_the_table() -> None:
    errors = [cls for cls in _all_errors() if cls.__module__ == cdc.errors.__name__]
    assert len(errors) > 10
    assert {cls.__name__: cls.exit_code in EXIT_CODES for cls in errors} == {
        cls.__name__: True for cls in errors
    }


def test_every_exit_code_of_the_table_is_in_cdc_help() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = result.output[result.output.index("Exit codes:") :].splitlines()[1:]
    assert [line.split(None, 1) for line in listed if line.strip()] == [
        [str(code), meaning] for code, meaning in EXIT_CODES.items()
    ]
    assert "  9  cdc verify found differences" in result.output
