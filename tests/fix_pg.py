"""Pytest plugin: a real PostgreSQL with wal_level=logical, and per-test isolation.

Where the server comes from, in order:

1. ``CDC_TEST_DSN`` (a superuser DSN of a server with wal_level=logical);
2. a testcontainers Postgres, when a Docker engine answers;
3. a throwaway cluster from the server binaries on this machine (cdc.demo.embedded).

Each test that asks for ``pg`` gets a fresh database, and a unique slot and publication name;
at teardown every slot of that database is dropped (a leaked slot retains WAL forever) and the
database is dropped with it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cdc.demo.embedded import EmbeddedPostgres, find_bindir, version_of, wheel_bindirs


@dataclass
class PgServer:
    """A server the tests may create databases on; ``embedded`` allows restarts."""

    dsn: str
    embedded: EmbeddedPostgres | None = None

    def dsn_for(self, dbname: str, **overrides: Any) -> str:
        params = conninfo_to_dict(self.dsn)
        params.update(dbname=dbname, **overrides)
        return make_conninfo(**params)


@dataclass
class PgDatabase:
    """One test's database: ``dsn`` plus unique ``slot`` and ``publication`` names."""

    server: PgServer
    name: str
    dsn: str
    slot: str
    publication: str

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn, **kwargs)

    def execute(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


def _docker_answers() -> bool:
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return False
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def extra_bindirs() -> list[Path]:
    """Server installations besides the primary one: $CDC_TEST_EXTRA_BINDIRS (os.pathsep
    separated) and the PostgreSQL server wheels installed here (16, 17, 18: cdc.demo.embedded)."""
    found = [Path(p) for p in os.environ.get("CDC_TEST_EXTRA_BINDIRS", "").split(os.pathsep) if p]
    found += wheel_bindirs()
    return [p for p in found if (p / "postgres").exists()]


def wanted_servers() -> set[str] | None:
    """``CDC_TEST_SERVERS``: which servers the `every_server` tests run on, while iterating:
    major versions and/or ``primary`` (the machine's server), comma separated, e.g. ``15,17``
    or ``primary``. Unset or ``all``: every server found (what CI runs)."""
    value = os.environ.get("CDC_TEST_SERVERS", "").strip().lower()
    if value in ("", "all"):
        return None
    return {part.strip().removeprefix("pg") for part in value.split(",") if part.strip()}


@functools.cache
def every_server_params() -> list[Any]:
    """One param per PostgreSQL major version available here (the primary's first)."""
    wanted = wanted_servers()
    primary = version_of(find_bindir())
    params: list[Any] = []
    if wanted is None or {"primary", primary} & wanted:
        params.append(pytest.param(None, id="primary"))
    seen = {primary}
    for bindir in extra_bindirs():
        version = version_of(bindir)
        if version in seen:
            continue
        seen.add(version)
        if wanted is None or version in wanted:
            params.append(pytest.param(str(bindir), id=f"pg{version}"))
    return params


@functools.cache
def has_extensions(bindir: Path, names: tuple[str, ...]) -> bool:
    """Whether this server installation ships these extensions (their control files)."""
    shares = [bindir.parent / "share" / "postgresql", bindir.parent / "share"]
    if (bindir / "pg_config").exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([str(bindir / "pg_config"), "--sharedir"], capture_output=True,
                                 text=True, check=True, timeout=10).stdout.strip()  # fmt: skip
            shares.insert(0, Path(out))
    return all(any((s / "extension" / f"{n}.control").exists() for s in shares) for n in names)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `every_server` run once per PostgreSQL version available here (limited by
    ``CDC_TEST_SERVERS``); the others on the primary server only. A test marked
    ``extensions(*names)`` is generated only for the servers that ship them, except on the
    primary, whose extensions scripts/bootstrap.sh installs (there a missing one fails the
    test); ``extensions(..., optional=True)`` for those it may not install (pgvector)."""
    if "pg_server" not in metafunc.fixturenames or os.environ.get("CDC_TEST_DSN"):
        return
    primary_bindir = find_bindir()
    params: list[Any] = [pytest.param(None, id="primary")]
    if metafunc.definition.get_closest_marker("every_server"):
        params = every_server_params()
    marker = metafunc.definition.get_closest_marker("extensions")
    if marker is not None:
        names = tuple(marker.args)
        params = [
            p
            for p in params
            if (p.values[0] is None and not marker.kwargs.get("optional"))
            or has_extensions(Path(p.values[0] or primary_bindir), names)
        ]
    metafunc.parametrize("pg_server", params, indirect=True, scope="session")


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[PgServer]:
    bindir = getattr(request, "param", None)
    if bindir is not None:
        server = EmbeddedPostgres(bindir=Path(bindir))
        server.start()
        try:
            yield PgServer(server.dsn, server)
        finally:
            server.stop()
        return
    dsn = os.environ.get("CDC_TEST_DSN")
    if dsn:
        yield PgServer(dsn)
        return
    if os.environ.get("CDC_TEST_NO_DOCKER") != "1" and _docker_answers():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16").with_command(
            "postgres -c wal_level=logical -c max_replication_slots=40 -c max_wal_senders=40 "
            "-c max_prepared_transactions=10"
        )
        with container:
            url = container.get_connection_url(driver=None)
            yield PgServer(url)
        return
    server = EmbeddedPostgres()
    server.start()
    try:
        yield PgServer(server.dsn, server)
    finally:
        server.stop()


def drop_database(server: PgServer, name: str) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as admin:
        # Slots first: DROP DATABASE refuses while the database has slots.
        for slot, pid in admin.execute(
            "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            if pid is not None:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with contextlib.suppress(psycopg.Error):
                for _ in range(50):
                    try:
                        admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                        break
                    except psycopg.errors.ObjectInUse:
                        time.sleep(0.1)
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def pg(pg_server: PgServer) -> Iterator[PgDatabase]:
    suffix = uuid.uuid4().hex[:10]
    name = f"cdc_test_{suffix}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = PgDatabase(
        pg_server, name, pg_server.dsn_for(name), slot=f"slot_{suffix}", publication=f"pub_{suffix}"
    )
    try:
        yield database
    finally:
        drop_database(pg_server, name)


@pytest.fixture
def pg_dsn(pg: PgDatabase) -> str:
    """A fresh empty database's DSN (for tests that need nothing else)."""
    return pg.dsn
