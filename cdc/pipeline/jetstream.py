"""NATS JetStream: the one boundary between the daemon's threads and nats-py's asyncio.

Everything that talks to NATS goes through a :class:`NatsLoop`: an asyncio event loop that runs
in its own thread and that synchronous code hands coroutines to (``loop.run(coro, timeout)``).
Nothing else in activity-cdc runs an event loop, so the rest of the code base stays
synchronous: the daemon's sink writer thread, ``cdc ingest``, ``cdc setup`` and ``cdc lag`` all
call in through it.

Also here, because the JetStream sink, ``cdc ingest`` and ``cdc setup`` must agree on them:

* the subject of a record: ``<prefix>.<source>.<schema>.<table>.<operation>`` (tokens escaped so
  a quoted identifier holding a dot or a space stays one token);
* its ``Nats-Msg-Id``: ``<database system id>:<slot>:<commit_lsn>:<seq>``, what JetStream
  de-duplicates on;
* its payload: the record as one JSON object whose JSON columns (``context``, ``old``, ``new``,
  ``changes``; left out when NULL) are embedded as the exact text the mapping produced, and
  read back as that text
  (:func:`decode_payload`), so a value the store receives is byte for byte what the PostgreSQL
  sink would have written (``1.50`` stays ``1.50``);
* the stream and the key-value bucket that ``cdc setup`` creates (:func:`plan_broker`).

Credentials come from the environment only (``CDC_NATS_CREDS`` a creds file,
``CDC_NATS_USER`` + ``CDC_NATS_PASSWORD``, or ``CDC_NATS_TOKEN``) and are never printed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import api

from cdc.config import SinkSettings
from cdc.errors import BrokerError, BrokerUnavailable, first_line
from cdc.pipeline.activity import ActivityRecord

log = logging.getLogger("cdc.jetstream")  # log lines keep the name they had

T = TypeVar("T")

MSG_ID = "Nats-Msg-Id"

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


# -- subjects, message ids, payloads ---------------------------------------------------------

_TOKEN_SAFE = re.compile(r"^[A-Za-z0-9_$-]+$")


def subject_token(name: str | None) -> str:
    """A subject token for a name: as is when it holds only ``[A-Za-z0-9_$-]``, else each other
    byte percent-encoded (``.``, spaces, ``*`` and ``>`` cannot appear in a token). ``_`` for
    none (an application message has no table)."""
    if not name:
        return "_"
    if _TOKEN_SAFE.match(name):
        return name
    return "".join(
        ch if _TOKEN_SAFE.match(ch) else "".join(f"%{b:02X}" for b in ch.encode()) for ch in name
    )


def subject_for(prefix: str, source: str, record: ActivityRecord) -> str:
    return (
        f"{prefix}.{source}.{subject_token(record.schema_name)}."
        f"{subject_token(record.table_name)}.{record.operation}"
    )


def checkpoint_key(system_id: str, slot: str) -> str:
    """The bucket key of one source's checkpoint (its cluster and slot)."""
    return f"checkpoint.{system_id}.{slot}"


def message_id(system_id: str, slot: str, record: ActivityRecord) -> str:
    return f"{system_id}:{slot}:{record.commit_lsn}:{record.seq}"


_dumps = json.JSONEncoder(ensure_ascii=False).encode


def _text(value: str | None) -> str:
    return "null" if value is None else _dumps(value)


def _raw(name: str, value: str | None) -> str:
    # A JSON column that is NULL is left out: its text could itself be the JSON `null`.
    return "" if value is None else f',"{name}":{value}'


def encode_payload(record: ActivityRecord, source: str) -> bytes:
    """The record as a JSON object; the JSON columns embedded as the text they hold."""
    r = record
    return (
        f'{{"source_database":{_dumps(source)},"occurred_at":{_dumps(r.occurred_at)},'
        f'"source":{_dumps(r.source)},"operation":{_dumps(r.operation)},'
        f'"action":{_dumps(r.action)},"category":{_dumps(r.category)},'
        f'"severity":{_dumps(r.severity)},"schema_name":{_text(r.schema_name)},'
        f'"table_name":{_text(r.table_name)},"entity_type":{_text(r.entity_type)},'
        f'"entity_id":{_text(r.entity_id)},"actor_id":{_text(r.actor_id)}'
        f"{_raw('context', r.context)}{_raw('old', r.old)}{_raw('new', r.new)}"
        f'{_raw("changes", r.changes)},"summary":{_text(r.summary)},'
        f'"xid":{"null" if r.xid is None else r.xid},"commit_lsn":{_dumps(r.commit_lsn)},'
        f'"seq":{r.seq}}}'
    ).encode()


_RAW_COLUMNS = frozenset(("context", "old", "new", "changes"))
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, at: int) -> int:
    """The index of the first non-whitespace character at or after ``at``."""
    match = _WHITESPACE.match(text, at)
    return match.end() if match else at


_scan = json.JSONDecoder().raw_decode


class PayloadError(ValueError):
    """A message's payload is not a record this version understands."""


def _members(text: str) -> dict[str, tuple[Any, str]]:
    """The members of a JSON object: name -> (value, the value's exact text)."""
    at = _skip(text, 0)
    if text[at : at + 1] != "{":
        raise PayloadError("not a JSON object")
    at = _skip(text, at + 1)
    members: dict[str, tuple[Any, str]] = {}
    if text[at : at + 1] == "}":
        return members
    while True:
        name, at = _scan(text, at)
        if not isinstance(name, str):
            raise PayloadError("member name is not a string")
        at = _skip(text, at)
        if text[at : at + 1] != ":":
            raise PayloadError("':' expected")
        start = _skip(text, at + 1)
        value, at = _scan(text, start)
        members[name] = (value, text[start:at])
        at = _skip(text, at)
        sep = text[at : at + 1]
        if sep == "}":
            return members
        if sep != ",":
            raise PayloadError("',' or '}' expected")
        at = _skip(text, at + 1)


def decode_payload(data: bytes) -> ActivityRecord:
    """The record a payload of :func:`encode_payload` carries; PayloadError if it is not one."""
    try:
        members = _members(data.decode())
        values: list[Any] = []
        for name in ActivityRecord._fields:
            if name in _RAW_COLUMNS:
                member = members.get(name)
                values.append(None if member is None else member[1])
            else:
                values.append(members[name][0])
        record = ActivityRecord(*values)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError) as exc:
        raise PayloadError(f"not an activity record: {first_line(exc)}") from None
    if not isinstance(record.seq, int) or not isinstance(record.commit_lsn, str):
        raise PayloadError("not an activity record: commit_lsn or seq has the wrong type")
    return record


# -- the stream and the bucket (cdc setup) ---------------------------------------------------


def stream_config(settings: SinkSettings) -> api.StreamConfig:
    return api.StreamConfig(
        name=settings.stream,
        description="activity-cdc activity records",
        subjects=[f"{settings.subject_prefix}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.OLD,
        num_replicas=settings.replicas,
        duplicate_window=float(settings.duplicate_window_s),
        max_age=settings.max_age_days * 86_400 if settings.max_age_days else None,
    )


def bucket_config(settings: SinkSettings) -> api.KeyValueConfig:
    return api.KeyValueConfig(
        bucket=settings.bucket,
        description="activity-cdc checkpoints: what each source has stored in the stream",
        history=1,
        storage=api.StorageType.FILE,
        replicas=settings.replicas,
    )


@dataclass(frozen=True)
class BrokerStep:
    description: str  # imperative
    done: str
    request: dict[str, Any]  # the JSON the server receives (what --dry-run prints)
    kind: str  # "create_stream" | "update_stream" | "create_bucket"


@dataclass
class BrokerPlan:
    servers: str
    steps: list[BrokerStep] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def script(self) -> str:
        lines = [f"# JetStream at {self.servers}: {len(self.steps)} step(s)"]
        for number, step in enumerate(self.steps, 1):
            lines.append(f"# {number}. {step.description}")
            lines.append(json.dumps(step.request, indent=2, sort_keys=True))
        lines.extend(f"# already in place: {text}" for text in self.unchanged)
        return "\n".join(lines) + "\n"


# The stream settings setup keeps as configured, and what they are called in the messages.
_COMPARED = (
    ("subjects", "subjects"),
    ("num_replicas", "replicas"),
    ("duplicate_window", "duplicate window"),
    ("max_age", "max age"),
)


async def _plan(js: Any, settings: SinkSettings, servers: str) -> BrokerPlan:
    plan = BrokerPlan(servers)
    wanted = stream_config(settings)
    try:
        info = await js.stream_info(settings.stream)
    except nats.js.errors.NotFoundError:
        plan.steps.append(
            BrokerStep(
                f"create stream {settings.stream} (subjects {settings.subject_prefix}.>, "
                f"{settings.replicas} replica(s), duplicate window {settings.duplicate_window_s}s)",
                f"created stream {settings.stream}",
                wanted.as_dict(),
                "create_stream",
            )
        )
    else:
        current = info.config
        if current.retention != wanted.retention or current.storage != wanted.storage:
            raise BrokerError(
                f"stream {settings.stream} exists with retention {current.retention} and "
                f"storage {current.storage}; activity-cdc needs limits retention on file storage "
                "(JetStream cannot change these): choose another [sink] stream name"
            )
        differs = [
            label
            for attr, label in _COMPARED
            if _normal(getattr(current, attr)) != _normal(getattr(wanted, attr))
        ]
        if differs:
            plan.steps.append(
                BrokerStep(
                    f"update stream {settings.stream}: {', '.join(differs)} as configured",
                    f"updated stream {settings.stream} ({', '.join(differs)})",
                    wanted.as_dict(),
                    "update_stream",
                )
            )
        else:
            plan.unchanged.append(f"stream {settings.stream} is as configured")
    try:
        await js.key_value(settings.bucket)
    except nats.js.errors.BucketNotFoundError:
        plan.steps.append(
            BrokerStep(
                f"create key-value bucket {settings.bucket} ({settings.replicas} replica(s))",
                f"created key-value bucket {settings.bucket}",
                bucket_config(settings).as_dict(),
                "create_bucket",
            )
        )
    else:
        plan.unchanged.append(f"key-value bucket {settings.bucket} exists")
    return plan


def _normal(value: Any) -> Any:
    if isinstance(value, list):
        return sorted(value)
    if isinstance(value, float) and value == 0:
        return None
    return value


async def _apply(js: Any, settings: SinkSettings, plan: BrokerPlan) -> list[str]:
    done = []
    for step in plan.steps:
        try:
            if step.kind == "create_stream":
                await js.add_stream(stream_config(settings))
            elif step.kind == "update_stream":
                await js.update_stream(stream_config(settings))
            else:
                await js.create_key_value(bucket_config(settings))
        except nats.js.errors.APIError as exc:
            raise BrokerError(
                f'JetStream refused "{step.description}": {exc.description}; '
                'fix it and run "cdc setup" again'
            ) from None
        done.append(step.done)
    return done


def plan_broker(settings: SinkSettings) -> BrokerPlan:
    """What ``cdc setup`` would create or change in JetStream; changes nothing."""
    return _with_jetstream(
        settings, lambda js: _plan(js, settings, describe_servers(settings.servers))
    )


def apply_broker(settings: SinkSettings) -> tuple[BrokerPlan, list[str]]:
    """Plan and apply on one connection; idempotent."""

    async def both(js: Any) -> tuple[BrokerPlan, list[str]]:
        plan = await _plan(js, settings, describe_servers(settings.servers))
        return plan, await _apply(js, settings, plan)

    return _with_jetstream(settings, both)


def _with_jetstream(settings: SinkSettings, work: Callable[[Any], Awaitable[T]]) -> T:
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


# -- lag (cdc lag, cdc check, the metrics) -----------------------------------------------------


@dataclass(frozen=True)
class ConsumerLag:
    name: str
    pending_messages: int  # in the stream, not yet delivered to this consumer
    ack_pending: int  # delivered, not yet acknowledged (being written, or lost with a process)
    ack_floor: int  # every stream sequence at or below it is written and acknowledged


@dataclass(frozen=True)
class JetStreamLag:
    """One sample of the stream, its consumers, and this source's checkpoint in the bucket;
    ``error`` says why there is none (the cluster is down, the stream is missing)."""

    stream: str
    messages: int | None = None
    last_seq: int | None = None
    consumers: tuple[ConsumerLag, ...] = ()
    published_commit_time: datetime | None = None  # last source commit stored in the stream
    error: str | None = None
    unreachable: bool = False  # the error is the cluster not answering

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.published_commit_time is not None:
            data["published_commit_time"] = self.published_commit_time.isoformat()
        return data

    def describe(self) -> list[str]:
        if self.error is not None:
            return [f"JetStream stream {self.stream}: {self.error}"]
        lines = [f"JetStream stream {self.stream}: {self.messages} messages, last {self.last_seq}"]
        lines.extend(
            f"  consumer {c.name}: {c.pending_messages} pending, {c.ack_pending} unacknowledged, "
            f"ack floor {c.ack_floor}"
            for c in self.consumers
        )
        return lines


async def _sample(js: Any, settings: SinkSettings, key: str | None) -> JetStreamLag:
    try:
        info = await js.stream_info(settings.stream)
    except nats.js.errors.NotFoundError:
        return JetStreamLag(settings.stream, error='the stream does not exist; run "cdc setup"')
    consumers = []
    for consumer in await js.consumers_info(settings.stream):
        consumers.append(
            ConsumerLag(
                consumer.name,
                int(consumer.num_pending or 0),
                int(consumer.num_ack_pending or 0),
                int(consumer.ack_floor.stream_seq or 0) if consumer.ack_floor else 0,
            )
        )
    published = None
    try:
        bucket = await js.key_value(settings.bucket)
    except nats.js.errors.BucketNotFoundError:
        return JetStreamLag(
            settings.stream,
            error=f'the key-value bucket {settings.bucket} does not exist; run "cdc setup"',
        )
    if key is not None:
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            entry = await bucket.get(key)
            commit_time = json.loads(entry.value or b"{}").get("commit_time")
            published = datetime.fromisoformat(commit_time) if commit_time else None
    return JetStreamLag(
        settings.stream,
        int(info.state.messages),
        int(info.state.last_seq),
        tuple(sorted(consumers, key=lambda c: c.name)),
        published,
    )


def jetstream_lag(settings: SinkSettings, checkpoint_key: str | None = None) -> JetStreamLag:
    """A sample; never raises for an unreachable cluster (the sample's ``error`` says so)."""
    try:
        return _with_jetstream(settings, lambda js: _sample(js, settings, checkpoint_key))
    except BrokerUnavailable as exc:
        return JetStreamLag(settings.stream, error=str(exc), unreachable=True)
    except BrokerError as exc:
        return JetStreamLag(settings.stream, error=str(exc))
