"""Pytest plugin: a 3-node NATS JetStream cluster of the tests' own (cdc.demo.embedded_nats).

Started once per session on free loopback ports, only when a test asks for ``nats_cluster``
(never the NATS that may run on 4222). Each test gets its own stream, subject prefix and
bucket names through ``jetstream_names`` and deletes them afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cdc.demo.embedded_nats import NatsCluster


@pytest.fixture(scope="session")
def nats_cluster() -> Iterator[NatsCluster]:
    cluster = NatsCluster(3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass(frozen=True)
class JetStreamNames:
    stream: str
    subject_prefix: str
    bucket: str

    def sink_section(self, cluster: NatsCluster, **overrides: object) -> dict[str, object]:
        return {
            "kind": "jetstream",
            "servers": cluster.urls,
            "stream": self.stream,
            "subject_prefix": self.subject_prefix,
            "bucket": self.bucket,
            **overrides,
        }


@pytest.fixture
def jetstream_names(nats_cluster: NatsCluster) -> Iterator[JetStreamNames]:
    tag = uuid.uuid4().hex[:10]
    names = JetStreamNames(f"ACT_{tag}", f"act_{tag}", f"cdc_{tag}")
    yield names

    async def drop() -> None:
        import nats

        nc = await nats.connect(nats_cluster.urls, connect_timeout=2, max_reconnect_attempts=2)
        js = nc.jetstream(timeout=10)
        for delete in (js.delete_stream(names.stream), js.delete_key_value(names.bucket)):
            with contextlib.suppress(Exception):
                await delete
        await nc.close()

    with contextlib.suppress(Exception):
        asyncio.run(drop())
