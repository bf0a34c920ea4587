"""Running the web server (``cdc serve``, ``cdc demo --serve``): the read pool, the token,
and uvicorn, in the foreground or in a thread.

Refuses to listen on an address other than loopback without a token given by the operator
(``CDC_WEB_TOKEN`` or ``[web] token_hash``); on loopback without one it makes one up and
writes it to a file only its user may read (the caller prints the file's path, never the
token: no secret in any output).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
from psycopg_pool import ConnectionPool

from cdc.config import Settings
from cdc.dsn import describe_target
from cdc.errors import ConfigError, ConnectError
from cdc.web.app import Web, create_app
from cdc.web.auth import Sessions, TokenCheck, is_loopback, make_token

log = logging.getLogger(__name__)

TOKEN_ENV = "CDC_WEB_TOKEN"


@dataclass(frozen=True)
class Access:
    """How the server is reached and signed in to; ``token_file`` holds the token when the
    server made it up."""

    host: str
    port: int
    tokens: TokenCheck
    token_file: Path | None = None

    def forget_token(self) -> None:
        """Remove the made-up token's file: the token dies with the server."""
        if self.token_file is not None:
            self.token_file.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.token_file.parent.rmdir()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def access_for(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Access:
    env = os.environ if env is None else env
    host = host or settings.web.host
    port = settings.web.port if port is None else port
    token = env.get(TOKEN_ENV) or None
    if token is not None:
        return Access(host, port, TokenCheck(token=token))
    if settings.web.token_hash is not None:
        return Access(host, port, TokenCheck(token_hash=settings.web.token_hash))
    if not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without a token: set {TOKEN_ENV} or [web] token_hash "
            '("cdc serve --hash-token" makes one), or serve on 127.0.0.1'
        )
    made_up = make_token()
    return Access(host, port, TokenCheck(token=made_up), token_file=_write_token(made_up))


def _write_token(token: str) -> Path:
    """The made-up token in a new private directory (0700) as a file of mode 0600."""
    folder = Path(tempfile.mkdtemp(prefix="cdc-web-"))
    path = folder / "token"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return path


def _read_only(conn: psycopg.Connection[Any]) -> None:
    # belt and braces over the reader role: this session cannot write even as an owner
    conn.execute("SET default_transaction_read_only = on")
    conn.execute("SET statement_timeout = '60s'")


def open_pool(settings: Settings) -> ConnectionPool[Any]:
    """The read pool, opened and checked: a DSN that does not connect fails here, once, with
    a ConnectError, not on every request."""
    dsn = settings.web_dsn
    pool: ConnectionPool[Any] = ConnectionPool(
        dsn,
        min_size=1,
        max_size=settings.web.pool_max_size,
        kwargs={"autocommit": True, "application_name": "activity-cdc web", "connect_timeout": 10},
        configure=_read_only,
        # A pooled session the server ended (a restart, a failover, an idle timeout) is
        # found on checkout and replaced, rather than failing its next request with a 503:
        # one empty round trip per request.
        check=ConnectionPool.check_connection,
        timeout=10.0,
        open=False,
        name="cdc-web",
    )
    pool.open()
    try:
        with pool.connection(timeout=10.0) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        pool.close()
        first = (str(exc).strip().splitlines() or ["no answer"])[0]
        raise ConnectError(
            f"cannot connect to the web reader's database {describe_target(dsn)}: {first}; "
            "check [web] dsn or CDC_WEB_DSN"
        ) from None
    return pool


def _check_port(host: str, port: int) -> None:
    """A port in use is a one-line error before anything starts, not uvicorn's exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --port"
            ) from None


class WebServer:
    """uvicorn with the app, on its own thread (:meth:`start`/:meth:`stop`) or in the
    foreground (:meth:`run`, until SIGINT/SIGTERM)."""

    def __init__(self, settings: Settings, access: Access) -> None:
        self.access = access
        _check_port(access.host, access.port)
        self.pool = open_pool(settings)
        web = Web(
            settings,
            self.pool,
            access.tokens,
            Sessions(lifetime_s=settings.web.session_hours * 3600),
        )
        config = uvicorn.Config(
            create_app(web),
            host=access.host,
            port=access.port,
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        try:
            self._server.run()
        finally:
            self.pool.close()
            self.access.forget_token()

    def start(self) -> WebServer:
        self._thread = threading.Thread(target=self._server.run, name="cdc-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.pool.close()
        self.access.forget_token()


@contextlib.contextmanager
def serving(settings: Settings, access: Access) -> Iterator[WebServer]:
    server = WebServer(settings, access).start()
    try:
        yield server
    finally:
        server.stop()
