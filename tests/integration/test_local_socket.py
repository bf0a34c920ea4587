"""``cdc check`` advises the server's local socket to a daemon that reaches its source over TCP
loopback, only when that socket would serve the same role on the same server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from cdc.cli import main
from cdc.control.local_socket import (
    DEFAULT_SOCKET_DIRECTORIES,
    local_socket_host,
    socket_directories,
)
from cdc.demo.embedded import EmbeddedPostgres

integration = pytest.mark.integration

IDENTITY = "SELECT pg_postmaster_start_time(), current_database()"


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedPostgres]:
    """A server of its own: the tests edit its pg_hba.conf."""
    with EmbeddedPostgres(settings={"wal_level": "logical"}) as started:
        with psycopg.connect(started.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
            conn.execute("CREATE ROLE plain LOGIN")
        yield started


def check(tmp_path: Path, dsn: str) -> str:
    config = tmp_path / "cdc.toml"
    config.write_text(f'[source]\ndsn = "{dsn}"\n\n[[tables]]\nname = "public.t"\n')
    result = CliRunner().invoke(main, ["--config", str(config), "check"])
    return result.output


def socket_line(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("warn local socket")]


@integration
def test_check_over_tcp_loopback_names_the_socket_that_reaches_the_same_database(
    server: EmbeddedPostgres, tmp_path: Path
) -> None:
    lines = socket_line(check(tmp_path, server.dsn))
    assert len(lines) == 1, lines
    host = f"host={server.basedir} "
    assert host in lines[0] and "[source] dsn" in lines[0]
    advised = server.dsn.replace("host=127.0.0.1", f"host={server.basedir}")
    with psycopg.connect(server.dsn) as tcp, psycopg.connect(advised) as local:
        assert local.info.host == str(server.basedir)
        assert local.execute(IDENTITY).fetchone() == tcp.execute(IDENTITY).fetchone()


@integration
def test_check_over_the_socket_says_nothing_of_it(server: EmbeddedPostgres, tmp_path: Path) -> None:
    output = check(tmp_path, server.dsn.replace("host=127.0.0.1", f"host={server.basedir}"))
    assert "ok   source " in output, output
    assert socket_line(output) == []


@integration
def test_no_advice_when_the_socket_refuses_the_role(server: EmbeddedPostgres) -> None:
    dsn = server.dsn_for("postgres", user="plain")
    with psycopg.connect(dsn, autocommit=True) as conn:
        # plain may not read unix_socket_directories (superuser-only): it looks where the
        # packages put the socket, and the connection stays usable after the refusal.
        assert socket_directories(conn) == list(DEFAULT_SOCKET_DIRECTORIES)
        assert conn.execute("SELECT current_user").fetchone() == ("plain",)
        # told where to look, as a superuser would learn it, only pg_hba.conf decides
        assert local_socket_host(conn, dsn, [str(server.basedir)]) == str(server.basedir)
    hba = server.datadir / "pg_hba.conf"
    before = hba.read_text()
    hba.write_text("local all plain reject\n" + before)
    with psycopg.connect(server.dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_reload_conf()")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert local_socket_host(conn, dsn, [str(server.basedir)]) is None
    finally:
        hba.write_text(before)
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_reload_conf()")


@integration
def test_no_advice_when_the_socket_of_that_port_is_another_server(
    server: EmbeddedPostgres,
) -> None:
    """A container's published port and a host's own cluster can share a port number."""
    with (
        EmbeddedPostgres(settings={"listen_addresses": "''"}, port=server.port) as other,
        psycopg.connect(server.dsn, autocommit=True) as conn,
    ):
        assert local_socket_host(conn, server.dsn, [str(other.basedir)]) is None
        found = local_socket_host(conn, server.dsn, [str(other.basedir), str(server.basedir)])
        assert found == str(server.basedir)
