"""NATS JetStream: the one boundary between the daemon's threads and nats-py's asyncio.

Everything that talks to NATS goes through a :class:`NatsLoop`: an asyncio event loop that runs
in its own thread and that synchronous code hands coroutines to (``loop.run(coro, timeout)``).
Nothing else in activity-cdc runs an event loop, so the rest of the code base stays
synchronous: the daemon's sink writer thread, ``cdc ingest``, ``cdc setup`` and ``cdc lag`` all
call in through it.

Beside it, because the JetStream sink, ``cdc ingest`` and ``cdc setup`` must agree on them:
what a record becomes on the wire (:mod:`cdc.pipeline.jetstream_messages`), the stream and the
bucket ``cdc setup`` creates (:mod:`cdc.pipeline.jetstream_broker`), and the lag sample
(:mod:`cdc.pipeline.jetstream_lag`).

Credentials come from the environment only (``CDC_NATS_CREDS`` a creds file,
``CDC_NATS_USER`` + ``CDC_NATS_PASSWORD``, or ``CDC_NATS_TOKEN``) and are never printed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient

from cdc.config import SinkSettings
from cdc.errors import BrokerUnavailable, first_line

log = logging.getLogger("cdc.jetstream")  # log lines keep the name they had

T = TypeVar("T")

# Errors of nats-py that mean "not reachable right now / not answered in time": retried.
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    nats.errors.Error,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
)


class NatsLoop:
    """An asyncio event loop in a background thread; :meth:`run` executes a coroutine on it and
    waits for the result (raising what it raised). Not re-entrant: never call :meth:`run` from
    a coroutine running on the loop."""

    def __init__(self, name: str = "activity-cdc-nats") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            if future.done():
                raise  # the coroutine's own timeout (the same class since Python 3.11)
            future.cancel()
            raise TimeoutError(f"no answer within {timeout_s:g}s") from None

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()


def describe_servers(servers: tuple[str, ...] | list[str]) -> str:
    """The servers for a message (URLs carry no credentials: the config refuses them)."""
    return ", ".join(servers)


def connect_options(settings: SinkSettings, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """nats-py connect options: the servers, credentials from the environment, and reconnects
    that go on for as long as the process runs (the caller bounds each request instead)."""
    env = os.environ if env is None else env
    options: dict[str, Any] = {
        "servers": list(settings.servers),
        "connect_timeout": 3,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "ping_interval": 5,
        "max_outstanding_pings": 3,
    }
    if env.get("CDC_NATS_CREDS"):
        options["user_credentials"] = env["CDC_NATS_CREDS"]
    elif env.get("CDC_NATS_USER"):
        options["user"] = env["CDC_NATS_USER"]
        options["password"] = env.get("CDC_NATS_PASSWORD", "")
    elif env.get("CDC_NATS_TOKEN"):
        options["token"] = env["CDC_NATS_TOKEN"]
    return options


async def open_connection(settings: SinkSettings, name: str) -> NatsClient:
    """Connect (each server tried once); BrokerUnavailable when none answers."""

    client: list[NatsClient] = []  # the client, once connected (the callbacks look at it)

    def closing() -> bool:
        return bool(client) and (client[0].is_closed or client[0].is_draining)

    async def on_error(exc: Exception) -> None:
        # nats-py reports every failed reconnect here; one line, no traceback, no secret.
        if not closing():
            log.warning("NATS: %s", first_line(exc))

    async def on_disconnected() -> None:
        # nats-py also calls this when we close the connection: only a loss is worth a warning
        if not closing():
            log.warning(
                "NATS: disconnected from %s; reconnecting", describe_servers(settings.servers)
            )

    async def on_reconnected() -> None:
        log.info("NATS: reconnected")

    options = connect_options(settings)
    try:
        # Reconnects are unlimited once connected; the first connect is bounded here (nats-py
        # would go round the servers for ever).
        nc = await asyncio.wait_for(
            nats.connect(
                name=name,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                **options,
            ),
            timeout=options["connect_timeout"] * max(len(settings.servers), 1) + 2,
        )
        client.append(nc)
        return nc
    except (TimeoutError, nats.errors.NoServersError):
        raise BrokerUnavailable(
            f"cannot connect to NATS at {describe_servers(settings.servers)}: no server "
            "answered; check [sink] servers (or CDC_NATS_SERVERS) and that the cluster runs"
        ) from None
    except UNAVAILABLE as exc:
        raise BrokerUnavailable(
            f"cannot connect to NATS at {describe_servers(settings.servers)}: "
            f"{first_line(exc)}; check [sink] servers and the credentials in CDC_NATS_*"
        ) from None


def with_jetstream(settings: SinkSettings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work`` on a JetStream context of its own connection (opened and closed here);
    BrokerUnavailable when the cluster does not answer."""
    loop = NatsLoop("activity-cdc-setup")

    async def session() -> T:
        nc = await open_connection(settings, "activity-cdc setup")
        try:
            return await work(nc.jetstream(timeout=10))
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    try:
        return loop.run(session(), timeout_s=60)
    except UNAVAILABLE as exc:
        raise BrokerUnavailable(
            f"JetStream at {describe_servers(settings.servers)} did not answer: "
            f"{first_line(exc)}; check that the cluster runs with JetStream enabled"
        ) from None
    finally:
        loop.close()
