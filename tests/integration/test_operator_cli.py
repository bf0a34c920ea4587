"""What an operator meets in the first week: --config after the subcommand, --json errors as
JSON, fatal errors as JSON log lines, human sizes and lags."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cdc.cli.main import main
from tests.fix_pg import PgDatabase

pytestmark = pytest.mark.integration


def write_config(path: Path, dsn: str, pg: PgDatabase | None = None) -> Path:
    slot = f"slot = '{pg.slot}'\npublication = '{pg.publication}'\n" if pg else ""
    path.write_text(
        f"[source]\ndsn = '{dsn}'\n{slot}[metrics]\nport = 0\n[[tables]]\nname = 'public.t'\n"
    )
    return path


def unreachable() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"host=127.0.0.1 port={port} user=x dbname=x connect_timeout=2"


def every_command(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += every_command(command, (*path, name))
    return found


def test_every_subcommand_accepts_config_after_its_name(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    assert isinstance(main, click.Group)
    commands = every_command(main)
    assert ("check",) in commands and ("triggers", "status") in commands
    for command in commands:
        found: click.Command = main
        for name in command:
            assert isinstance(found, click.Group)
            found = found.commands[name]
        assert any("--config" in getattr(p, "opts", ()) for p in found.params), command
    for command in (["check"], ["lag"], ["setup", "--dry-run"], ["activity"], ["stats"],
                    ["triggers", "status"], ["run", "--drain"]):  # fmt: skip
        result = CliRunner().invoke(main, [*command, "--config", str(missing)])
        assert result.exit_code == 4, (command, result.output)
        assert f"{missing}: config file not found" in result.output, command


def test_config_after_the_subcommand_wins_over_the_one_before(
    pg: PgDatabase, tmp_path: Path
) -> None:
    pg.execute("CREATE TABLE t (id int PRIMARY KEY)")
    good = write_config(tmp_path / "good.toml", pg.dsn, pg)
    result = CliRunner().invoke(
        main, ["--config", str(tmp_path / "nowhere.toml"), "setup", "--config", str(good)]
    )
    assert result.exit_code == 0, result.output
    assert "done: " in result.output


def test_lag_json_prints_every_outcome_as_json(pg: PgDatabase, tmp_path: Path) -> None:
    down = write_config(tmp_path / "down.toml", unreachable())
    result = CliRunner().invoke(main, ["--config", str(down), "lag", "--json"])
    assert result.exit_code == 5
    error = json.loads(result.output)
    assert error["ok"] is False and error["exit_code"] == 5 and error["kind"] == "ConnectError"
    assert error["error"].startswith("cannot connect to the source database 127.0.0.1:")

    result = CliRunner().invoke(main, ["--config", str(down), "lag", "--json", "--count", "2"])
    assert result.exit_code == 2
    assert json.loads(result.output) == {
        "ok": False, "error": "--count goes with --watch", "kind": "UsageError", "exit_code": 2,
    }  # fmt: skip

    pg.execute("CREATE TABLE t (id int PRIMARY KEY)")
    config = write_config(tmp_path / "cdc.toml", pg.dsn, pg)
    result = CliRunner().invoke(main, ["--config", str(config), "lag", "--json"])
    assert result.exit_code == 6
    assert json.loads(result.output)["kind"] == "SlotNotFound"
    assert CliRunner().invoke(main, ["--config", str(config), "setup"]).exit_code == 0
    result = CliRunner().invoke(
        main, ["--config", str(config), "lag", "--json", "--max-seconds", "0.000001"]
    )
    assert result.exit_code == 3
    sample, over = (json.loads(line) for line in result.output.splitlines())
    assert sample["slot"] == pg.slot
    assert over["kind"] == "LagExceeded" and over["exit_code"] == 3


def test_a_fatal_error_is_a_json_log_line_when_logs_are_json(tmp_path: Path) -> None:
    down = write_config(tmp_path / "down.toml", unreachable() + " password=Sekr1t")
    result = CliRunner().invoke(
        main, ["--log-format", "json", "--config", str(down), "run", "--drain"]
    )
    assert result.exit_code == 5
    lines = [json.loads(line) for line in result.output.splitlines()]
    fatal = lines[-1]
    assert fatal["level"] == "error" and fatal["logger"] == "cdc.cli"
    assert fatal["exit_code"] == 5 and fatal["kind"] == "ConnectError"
    assert "cannot connect" in fatal["message"]
    assert "Sekr1t" not in result.output


def test_lag_prints_sizes_and_ages_for_people(pg: PgDatabase, tmp_path: Path) -> None:
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    config = write_config(tmp_path / "cdc.toml", pg.dsn, pg)
    assert CliRunner().invoke(main, ["--config", str(config), "setup"]).exit_code == 0
    pg.execute("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
    result = CliRunner().invoke(main, ["--config", str(config), "lag"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^  unconfirmed: \d+\.\d MB \(confirmed ", result.output, re.M), result.output
    assert re.search(r"^  retained:    \d+\.\d MB \(restart ", result.output, re.M)
    assert CliRunner().invoke(main, ["--config", str(config), "run", "--drain"]).exit_code == 0
    result = CliRunner().invoke(main, ["--config", str(config), "lag"])
    assert re.search(r"last recorded commit: \S+ \(\d+\.\d s ago\)", result.output), result.output
