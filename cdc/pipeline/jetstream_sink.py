"""JetStream sink: activity records onto a NATS JetStream stream, exactly once.

A :class:`~cdc.pipeline.sinks.RecordSink` (the contract is in cdc/pipeline/sinks.py). Each record
is published to
``<prefix>.<source>.<schema>.<table>.<operation>`` with ``Nats-Msg-Id =
<system id>:<slot>:<commit_lsn>:<seq>`` (cdc/pipeline/jetstream_messages.py). What makes
"nothing lost, nothing duplicated" hold:

* **Durable** means every record of the flush has its PubAck: the stream stored it on a
  majority of its replicas. A flush returns only when all its PubAcks are in; then (for a
  flush with a checkpoint) the checkpoint is put into the key-value bucket, and only after
  that does the daemon acknowledge the source commit to PostgreSQL.
* Publishes are pipelined: at most ``[sink] max_pending_publishes`` await their PubAck at
  once (the client's flow control), and a flush waits for all of them, so memory is bounded
  by one flush, as with the PostgreSQL sink; large transactions arrive as chunks.
* After a crash the daemon republishes from the slot's confirmed position. JetStream drops a
  message whose ``Nats-Msg-Id`` it stored within ``duplicate_window_s``. The bucket's
  checkpoint also holds the last record stored (``published``: commit LSN and seq, moved after
  every chunk), and records at or below it are not published again, so a restart after the
  window does not duplicate either. What remains: a crash after the PubAcks of a flush and
  before its checkpoint put, followed by a restart more than the window later, publishes that
  one flush again (docs/scale-out.md).
* A PubAck missing after ``publish_timeout_s`` (cluster down, no leader, connection cut) fails
  the flush with :class:`~cdc.errors.BrokerUnavailable`: nothing of it is acknowledged, the
  supervisor reconnects with backoff and the slot sends it again.

The sink owns a :class:`~cdc.pipeline.jetstream.NatsLoop`: the writer thread calls :meth:`write`
synchronously, the publishing runs as asyncio on the loop's own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import datetime
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.kv import KeyValue

from cdc import failpoints
from cdc.config import SinkSettings
from cdc.errors import BrokerError, BrokerUnavailable, first_line
from cdc.lsn import Lsn, format_lsn
from cdc.pipeline.activity import ActivityRecord
from cdc.pipeline.batching import Flush
from cdc.pipeline.jetstream import UNAVAILABLE, NatsLoop, describe_servers, open_connection
from cdc.pipeline.jetstream_messages import MSG_ID, checkpoint_key, encode_payload, subject_token
from cdc.pipeline.sinks import StoredCheckpoint

log = logging.getLogger("cdc.jetstream_sink")  # log lines keep the name they had

_MODE_OF_ACTION = {"migration.cutover": "cdc", "migration.rollback": "shadow"}


class JetStreamSink:
    """Publishes flushes; not thread-safe (the SinkWriter owns it)."""

    def __init__(
        self, settings: SinkSettings, *, slot: str, system_id: str, source_name: str
    ) -> None:
        self.settings = settings
        self.slot = slot
        self.system_id = system_id
        self.source_name = subject_token(source_name)
        self.key = checkpoint_key(system_id, slot)
        self._prefix = f"{settings.subject_prefix}.{self.source_name}."
        self._loop: NatsLoop | None = None
        self._nc: NatsClient | None = None
        self._js: Any = None
        self._kv: KeyValue | None = None
        # What the bucket holds for this source (see _state_json).
        self._checkpoint: StoredCheckpoint | None = None
        self._published: tuple[int, int] = (0, -1)  # (commit LSN, seq) of the last stored
        self._modes: dict[tuple[str, str], str] = {}
        self.duplicates = 0  # messages JetStream reported as already stored

    # -- the contract -------------------------------------------------------------------------
    def open(self) -> None:
        self._loop = NatsLoop("activity-cdc-jetstream")
        self._call(self._open(), "connect")

    async def _open(self) -> None:
        settings = self.settings
        self._nc = await open_connection(settings, f"activity-cdc {self.source_name}")
        self._js = self._nc.jetstream(
            timeout=settings.publish_timeout_s,
            publish_async_max_pending=settings.max_pending_publishes,
        )
        try:
            info = await self._js.stream_info(settings.stream)
        except nats.js.errors.NotFoundError:
            raise BrokerError(
                f"JetStream stream {settings.stream} does not exist at "
                f'{describe_servers(settings.servers)}; run "cdc setup"'
            ) from None
        subjects = info.config.subjects or []
        if f"{settings.subject_prefix}.>" not in subjects:
            raise BrokerError(
                f"JetStream stream {settings.stream} does not take the subjects "
                f"{settings.subject_prefix}.> (it has {', '.join(subjects) or 'none'}); run "
                '"cdc setup" or fix [sink] stream / subject_prefix'
            )
        try:
            self._kv = await self._js.key_value(settings.bucket)
        except nats.js.errors.BucketNotFoundError:
            raise BrokerError(
                f'JetStream key-value bucket {settings.bucket} does not exist; run "cdc setup"'
            ) from None
        try:
            entry = await self._kv.get(self.key)
        except nats.js.errors.KeyNotFoundError:
            pass
        else:
            # Only the bucket says what is stored. Not the last message of each subject: a
            # flush that failed part-way (a connection cut, a leader change) can leave a
            # message stored after one that was lost, and skipping up to it would lose that
            # one. (A long chaos run did: 189 changes.)
            self._load_state(entry.value or b"{}")

    def close(self) -> None:
        loop, nc = self._loop, self._nc
        self._nc = self._js = self._kv = None
        if loop is None:
            return
        if nc is not None:
            with contextlib.suppress(Exception):
                loop.run(nc.close(), timeout_s=5)
        loop.close()
        self._loop = None

    def read_checkpoint(self) -> StoredCheckpoint | None:
        return self._checkpoint

    def read_modes(self) -> dict[tuple[str, str], str]:
        return dict(self._modes)

    def write(self, flush: Flush) -> int:
        after = self._published
        records = flush.records
        if records and (Lsn.parse(records[0].commit_lsn), records[0].seq) <= after:
            # Only after a restart: records in commit order, some already stored.
            records = [r for r in records if (Lsn.parse(r.commit_lsn), r.seq) > after]
        if len(records) < len(flush.records):
            log.info(
                "%d records through commit %s seq %d are in the stream already; not published "
                "again",
                len(flush.records) - len(records),
                format_lsn(after[0]),
                after[1],
            )
        self._call(self._write(records, flush), "publish")
        return 0

    # -- publishing ---------------------------------------------------------------------------
    async def _write(self, records: list[ActivityRecord], flush: Flush) -> None:
        if records:
            await self._publish(records)
            last = records[-1]
            self._published = (Lsn.parse(last.commit_lsn), last.seq)
            self._note_modes(records)
        checkpoint = flush.checkpoint
        if checkpoint is not None:
            self._checkpoint = StoredCheckpoint(
                Lsn(checkpoint.commit_lsn), Lsn(checkpoint.end_lsn), checkpoint.commit_time
            )
        if records or checkpoint is not None:
            failpoints.hit("jetstream.before_checkpoint")
            assert self._kv is not None
            await self._kv.put(self.key, self._state_json())
            failpoints.hit("jetstream.after_checkpoint")

    async def _publish(self, records: list[ActivityRecord]) -> None:
        js = self._js
        prefix = self._prefix
        source = self.source_name
        id_prefix = f"{self.system_id}:{self.slot}:"
        futures: list[asyncio.Future[Any]] = []
        try:
            for r in records:
                subject = (
                    f"{prefix}{subject_token(r.schema_name)}.{subject_token(r.table_name)}."
                    f"{r.operation}"
                )
                headers = {MSG_ID: f"{id_prefix}{r.commit_lsn}:{r.seq}"}
                # Waits while max_pending_publishes are unanswered (flow control), at most
                # wait_stall seconds (TooManyStalledMsgsError: retried like a missing PubAck).
                futures.append(
                    await js.publish_async(
                        subject,
                        encode_payload(r, source),
                        headers=headers,
                        wait_stall=self.settings.publish_timeout_s,
                    )
                )
            acks = await asyncio.wait_for(
                asyncio.gather(*futures), timeout=self.settings.publish_timeout_s
            )
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        stream = self.settings.stream
        for ack in acks:
            if ack.stream != stream:
                raise BrokerError(
                    f"JetStream stored a record in stream {ack.stream}, not {stream}: two "
                    f"streams take the subjects {self.settings.subject_prefix}.>; remove the "
                    "other one"
                )
            if ack.duplicate:
                self.duplicates += 1

    # -- the checkpoint in the bucket -----------------------------------------------------------
    def _state_json(self) -> bytes:
        checkpoint = self._checkpoint
        state: dict[str, Any] = {
            "published_commit_lsn": format_lsn(self._published[0]),
            "published_seq": self._published[1],
            "modes": [[s, t, m] for (s, t), m in sorted(self._modes.items())],
        }
        if checkpoint is not None:
            state["commit_lsn"] = format_lsn(checkpoint.commit_lsn)
            state["end_lsn"] = format_lsn(checkpoint.end_lsn)
            state["commit_time"] = (
                checkpoint.commit_time.isoformat() if checkpoint.commit_time else None
            )
        return json.dumps(state).encode()

    def _load_state(self, value: bytes) -> None:
        try:
            state = json.loads(value)
            if "commit_lsn" in state:
                commit_time = state.get("commit_time")
                self._checkpoint = StoredCheckpoint(
                    Lsn.parse(state["commit_lsn"]),
                    Lsn.parse(state["end_lsn"]),
                    datetime.fromisoformat(commit_time) if commit_time else None,
                )
            self._published = (
                Lsn.parse(state["published_commit_lsn"]),
                int(state["published_seq"]),
            )
            self._modes = {(s, t): m for s, t, m in state.get("modes", [])}
        except (ValueError, KeyError, TypeError) as exc:
            raise BrokerError(
                f"the checkpoint {self.key} in bucket {self.settings.bucket} is not readable "
                f"({exc}); it is written only by activity-cdc: restore or delete it"
            ) from None

    def _note_modes(self, records: list[ActivityRecord]) -> None:
        for record in records:
            if record.source == "migration" and record.schema_name and record.table_name:
                mode = _MODE_OF_ACTION.get(record.action)
                if mode is not None:
                    self._modes[(record.schema_name, record.table_name)] = mode

    # -- the boundary -------------------------------------------------------------------------
    def _call(self, coro: Any, what: str) -> Any:
        assert self._loop is not None
        try:
            # The coroutine bounds each wait itself; this is the backstop.
            return self._loop.run(coro, timeout_s=self.settings.publish_timeout_s * 3 + 30)
        except (BrokerError, BrokerUnavailable):
            raise
        except nats.js.errors.APIError as exc:
            if isinstance(exc, nats.js.errors.ServiceUnavailableError):
                raise BrokerUnavailable(self._unavailable(what, exc)) from None
            raise BrokerError(
                f"JetStream refused to {what}: {exc.description or exc}; check the stream "
                f'{self.settings.stream} ("cdc check")'
            ) from None
        except UNAVAILABLE as exc:
            raise BrokerUnavailable(self._unavailable(what, exc)) from None

    def _unavailable(self, what: str, exc: BaseException) -> str:
        reason = (
            f"no PubAck within {self.settings.publish_timeout_s:g}s"
            if isinstance(exc, TimeoutError) and not str(exc).strip()
            else first_line(exc)
        )
        return (
            f"JetStream at {describe_servers(self.settings.servers)} did not {what} in time "
            f"({reason}); nothing was acknowledged, retrying"
        )
