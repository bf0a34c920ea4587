"""A sample of JetStream for ``cdc lag``, ``cdc check`` and the metrics: the stream, its
consumers, and a source's checkpoint in the bucket."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import nats.js.errors

from cdc.config import SinkSettings
from cdc.errors import BrokerError, BrokerUnavailable
from cdc.pipeline.jetstream import with_jetstream


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
        return with_jetstream(settings, lambda js: _sample(js, settings, checkpoint_key))
    except BrokerUnavailable as exc:
        return JetStreamLag(settings.stream, error=str(exc), unreachable=True)
    except BrokerError as exc:
        return JetStreamLag(settings.stream, error=str(exc))
