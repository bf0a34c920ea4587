"""A known password appears in no output of any command: results, errors, human and JSON logs
at debug level, `cdc check`, nor the metrics endpoint."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc.cli.main import main
from tests.fix_pg import PgDatabase

pytestmark = pytest.mark.integration

PASSWORD = "Sup3r-Secret-Pa55word"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_known_password_never_appears_in_any_output(pg: PgDatabase, tmp_path: Path) -> None:
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, secret_note text)")
    port = free_port()
    config = tmp_path / "cdc.toml"
    # trust authentication ignores the password: it is there only to be leaked, or not
    config.write_text(
        f"[source]\ndsn = 'postgresql://postgres:{PASSWORD}@127.0.0.1:{pg.dsn.split('port=')[1].split()[0]}"
        f"/{pg.name}'\nslot = '{pg.slot}'\npublication = '{pg.publication}'\n"
        f"[metrics]\nport = {port}\n[[tables]]\nname = 'public.t'\n"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f"[source]\ndsn = 'host=127.0.0.1 port=1 user=x password={PASSWORD} connect_timeout=1'\n"
        "[[tables]]\nname = 'public.t'\n"
    )
    runner = CliRunner()
    outputs = []
    for log_format in ("human", "json"):
        base = ["--config", str(config), "--log-level", "debug", "--log-format", log_format]
        for command in (["setup"], ["check"], ["lag", "--json"], ["run", "--drain"],
                        ["activity", "--format", "json"], ["stats"]):  # fmt: skip
            if command == ["run", "--drain"]:
                pg.execute("INSERT INTO t VALUES (%s, 'x')", (len(outputs),))
            result = runner.invoke(main, [*base, *command])
            outputs.append(result.output)
            assert result.exit_code in (0, 5, 6), (command, result.output)
        bad_base = ["--config", str(bad), "--log-level", "debug", "--log-format", log_format]
        for command in (["setup"], ["check"], ["run", "--drain"], ["lag"]):
            outputs.append(runner.invoke(main, [*bad_base, *command]).output)
    text = "\n".join(outputs)
    assert "records from" in text  # the runs really ran
    assert PASSWORD not in text
    # the metrics endpoint, while a daemon runs: labels and values never hold a DSN
    from cdc.config import load_settings
    from cdc.metrics_http import start_metrics

    _metrics, server = start_metrics(load_settings(config).metrics)
    try:
        assert server is not None
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert PASSWORD.encode() not in body and b"activity_cdc_" in body
    finally:
        if server is not None:
            server.stop()


# Passwords that libpq cannot parse unquoted, or that break a URL: its parse errors quote the
# text after the break ("missing "=" after ..."), which must never reach any output.
MALFORMED = [
    f"host=127.0.0.1 port=1 user=x password=Sup3r {PASSWORD} connect_timeout=1",
    f"host=127.0.0.1 port=1 user=x password='{PASSWORD} connect_timeout=1",
    f"host=127.0.0.1 port=1 user=x password={PASSWORD}\\",
    f"postgresql://x:{PASSWORD}@127.0.0.1:1/db?connect_timeout=1&bad option",
    f"postgresql://x:{PASSWORD}@[127.0.0.1:1/db",
    f"postgresql://x:{PASSWORD} tail@127.0.0.1:1/db?sslmode=nonsense",
]


@pytest.mark.parametrize("dsn", MALFORMED)
def test_a_malformed_dsn_never_shows_its_password(dsn: str, tmp_path: Path) -> None:
    config = tmp_path / "cdc.toml"
    config.write_text("[[tables]]\nname = 'public.t'\n")
    runner = CliRunner()
    outputs = []
    for log_format in ("human", "json"):
        base = ["--config", str(config), "--log-level", "debug", "--log-format", log_format]
        for command in (["setup"], ["check"], ["check", "--json"], ["run", "--drain"], ["lag"],
                        ["lag", "--json"], ["activity"], ["stats"]):  # fmt: skip
            for env in ({"CDC_SOURCE_DSN": dsn}, {"CDC_SOURCE_DSN": "host=127.0.0.1 port=1",
                                                  "CDC_SINK_DSN": dsn}):  # fmt: skip
                result = runner.invoke(main, [*base, *command], env=env)
                outputs.append(result.output)
                assert result.exit_code in (4, 5), (command, result.output)
                assert "Traceback" not in result.output
    text = "\n".join(outputs)
    for fragment in (PASSWORD, PASSWORD[-8:], "Sup3r"):
        assert fragment not in text
