"""``cdc ingest``: records from a JetStream stream into a PostgreSQL activity store, exactly once.

Many sources publish into one stream (cdc/pipeline/jetstream_sink.py); any number of ingest
processes
read it through one durable pull consumer (JetStream hands each message to one of them) and
write one store. Per batch of messages:

1. decode each payload back into the record the daemon built (its JSON columns as the exact
   text, cdc/pipeline/jetstream_messages.py);
2. in ONE store transaction: claim the batch's stream sequences in ``<schema>.ingested``
   (``sql/ingest_claim.sql``: a sequence already there, or at or below the consumer's floor,
   is not returned), write the records of the claimed ones exactly as the PostgreSQL sink
   does (COPY, hash chain, rollups: :class:`cdc.pipeline.sink.Sink`), commit;
3. only then acknowledge the messages to JetStream.

A crash before the commit leaves nothing and JetStream delivers the messages again after
``ack_wait``; a crash (or a lost ack) after it makes JetStream deliver them again, to this or
another process, and the claim finds them written: they are acknowledged and not written twice.
Two processes that both hold a redelivered message wait on each other's claim and one of them
writes it. The sequences at or below the consumer's ack floor (written and acknowledged, never
delivered again) are pruned from ``ingested`` (``sql/ingest_floor.sql``).

Memory is bounded by one batch (``batch_max`` messages). ``drain``: stop once every message the
stream held at the start is acknowledged (by this or another process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api
from psycopg import sql

from cdc.config import Settings
from cdc.control.setup import setup_store
from cdc.errors import BrokerError, BrokerUnavailable, ConnectError, SinkError
from cdc.pipeline.activity import ActivityRecord
from cdc.pipeline.batching import Flush
from cdc.pipeline.jetstream import UNAVAILABLE, NatsLoop, open_connection
from cdc.pipeline.jetstream_messages import PayloadError, decode_payload, source_of
from cdc.pipeline.sink import Sink
from cdc.retry import Backoff, is_connection_loss
from cdc.sqlfiles import sql_template
from cdc.store.chain import iso_utc_text

log = logging.getLogger("cdc.ingest")  # log lines keep the name they had

DEFAULT_CONSUMER = "activity_ingest"


@dataclass
class IngestStats:
    messages: int = 0  # messages received (redeliveries included)
    records: int = 0  # records written to the store
    already_stored: int = 0  # redelivered messages whose record was in the store
    duplicates: int = 0  # records the stream held twice (under two sequences), written once
    rejected: int = 0  # messages that are not records (terminated, logged)
    batches: int = 0
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class IngestOptions:
    store_dsn: str
    consumer: str = DEFAULT_CONSUMER
    batch_max: int = 2000
    ack_wait_s: float = 30.0
    drain: bool = False
    fetch_wait_s: float = 1.0


class Ingest:
    """One ingest process; :meth:`run` until :meth:`request_stop` (or drained)."""

    def __init__(self, settings: Settings, options: IngestOptions) -> None:
        self.settings = settings
        self.options = options
        self.stats = IngestStats()
        self._stopping = threading.Event()
        self.reconnects = 0
        sink = settings.sink
        self._stream = sink.stream
        self._claim_sql = sql_template("ingest_claim.sql", schema=sink.schema_name)
        self._floor_sql = sql_template("ingest_floor.sql", schema=sink.schema_name)
        self._stored_sql = sql_template(
            "ingest_stored.sql", schema=sink.schema_name, records=sink.table_name
        )
        self._lock_sql = sql.SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(
            sql.Literal(f"activity-cdc ingest {sink.schema_name}.{sink.table_name}")
        )

    def request_stop(self) -> None:
        """Finish the batch in hand (commit, acknowledge) and return. Signal-safe."""
        self._stopping.set()

    def run(self) -> IngestStats:
        """Ingest until stopped (or drained). A lost connection to the store or to NATS is
        retried with backoff (``[daemon] reconnect_*``), like the daemon's supervisor does:
        nothing unwritten was acknowledged, so the messages come again."""
        started = time.monotonic()
        options = self.settings.daemon
        backoff = Backoff(options.reconnect_initial_s, options.reconnect_max_s)
        store_ready = False
        try:
            while True:
                attempt_started = time.monotonic()
                try:
                    if not store_ready:  # a store that is not up yet is waited for too
                        for line in setup_store(self.settings, self.options.store_dsn).actions:
                            log.info("store: %s", line)
                        store_ready = True
                    self._attempt()
                    return self.stats
                except (ConnectError, SinkError) as exc:
                    if not is_connection_loss(exc) or self._stopping.is_set():
                        raise
                    if time.monotonic() - attempt_started > options.reconnect_reset_after_s:
                        backoff.reset()
                    delay = backoff.next_delay()
                    self.reconnects += 1
                    log.warning("%s; reconnecting in %.1fs", exc, delay)
                    if self._stopping.wait(delay):
                        return self.stats
        finally:
            self.stats.elapsed_s = time.monotonic() - started

    def _attempt(self) -> None:
        settings = self.settings
        store = Sink(
            self.options.store_dsn,
            schema=settings.sink.schema_name,
            table=settings.sink.table_name,
            slot=f"jetstream:{self._stream}:{self.options.consumer}",
            hash_chain=settings.sink.hash_chain,
            dead_letter=settings.sink.on_refused == "dead_letter",
        )
        loop = NatsLoop("activity-cdc-ingest")
        try:
            store.open()
            loop.run(self._session(store), timeout_s=None)
        finally:
            store.close()
            loop.close()

    async def _session(self, store: Sink) -> None:
        sink = self.settings.sink
        nc = await open_connection(sink, f"activity-cdc ingest {self.options.consumer}")
        try:
            js = nc.jetstream(timeout=10)
            try:
                info = await js.stream_info(sink.stream)
            except nats.js.errors.NotFoundError:
                raise BrokerError(
                    f'JetStream stream {sink.stream} does not exist; run "cdc setup" for a '
                    "source first"
                ) from None
            target = info.state.last_seq if self.options.drain else None
            subscription = await js.pull_subscribe(
                f"{sink.subject_prefix}.>",
                durable=self.options.consumer,
                stream=sink.stream,
                config=api.ConsumerConfig(
                    ack_policy=api.AckPolicy.EXPLICIT,
                    ack_wait=self.options.ack_wait_s,
                    deliver_policy=api.DeliverPolicy.ALL,
                    max_ack_pending=max(self.options.batch_max * 8, 1000),
                    max_deliver=-1,
                ),
            )
            log.info(
                "ingesting stream %s through consumer %s%s",
                sink.stream,
                self.options.consumer,
                f" up to sequence {target}" if target is not None else "",
            )
            last_floor_at = time.monotonic()
            while not self._stopping.is_set():
                try:
                    messages = await subscription.fetch(
                        self.options.batch_max, timeout=self.options.fetch_wait_s
                    )
                except (TimeoutError, nats.errors.TimeoutError):
                    messages = []
                if messages:
                    # The store's I/O is synchronous: off the loop, so the client keeps
                    # answering pings while a large batch commits.
                    await asyncio.get_running_loop().run_in_executor(
                        None, self._write, store, messages
                    )
                    for msg in messages:
                        await msg.ack()
                    await nc.flush(timeout=10)
                now = time.monotonic()
                if target is not None or not messages or now - last_floor_at > 10:
                    floor = await self._floor(js)
                    last_floor_at = now
                    await asyncio.get_running_loop().run_in_executor(
                        None, self._store_floor, store, floor
                    )
                    if target is not None and floor >= target:
                        log.info("drained: stream %s acknowledged through %d", sink.stream, floor)
                        return
        except UNAVAILABLE as exc:
            raise BrokerUnavailable(
                f"JetStream did not answer: {str(exc).strip() or type(exc).__name__}; nothing "
                "unwritten was acknowledged, run ingest again"
            ) from None
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _floor(self, js: Any) -> int:
        info = await js.consumer_info(self._stream, self.options.consumer)
        return int(info.ack_floor.stream_seq) if info.ack_floor else 0

    def _write(self, store: Sink, messages: list[Msg]) -> None:
        """Claim, write, commit: one store transaction for the batch."""
        by_seq: dict[int, ActivityRecord] = {}
        sources: dict[int, str] = {}
        for msg in messages:
            seq = msg.metadata.sequence.stream
            try:
                by_seq[seq] = decode_payload(msg.data)
                sources[seq] = source_of(msg.headers)
            except PayloadError as exc:
                self.stats.rejected += 1
                log.error(
                    "stream %s sequence %d (subject %s) is not an activity record (%s); "
                    "acknowledged without writing it",
                    self._stream,
                    seq,
                    msg.subject,
                    exc,
                )
        self.stats.messages += len(messages)
        if not by_seq:
            return
        rows = store.execute(self._claim_sql, {"stream": self._stream, "seqs": sorted(by_seq)})
        claimed = sorted((row[0] for row in rows), key=lambda seq: _order(by_seq[seq]))
        written = 0
        if claimed:
            # One ingest process at a time between looking for the batch's records in the
            # store and committing them: a record the stream holds twice, handed to two
            # processes, is then written by the first and found by the second.
            store.execute(self._lock_sql, {})
            fresh = self._not_stored(store, [(by_seq[seq], sources[seq]) for seq in claimed])
            for source, records in fresh.items():
                store.execute(_SET_SOURCE, {"source_id": source})
                store.write(Flush(records, None))
                written += len(records)
            self.stats.duplicates += len(claimed) - written
        store.commit()
        self.stats.batches += 1
        self.stats.records += written
        self.stats.already_stored += len(by_seq) - len(claimed)

    def _not_stored(
        self, store: Sink, batch: list[tuple[ActivityRecord, str]]
    ) -> dict[str, list[ActivityRecord]]:
        """The batch's records the store does not hold yet, by source, in batch order."""
        times = [iso_utc_text(record.occurred_at) for record, _ in batch]
        # A time only the server reads (an application event's own) is not looked up: the
        # daemon's records carry commit times, and the key refuses a duplicate of it anyway.
        known = [i for i, at in enumerate(times) if at is not None]
        rows = store.execute(
            self._stored_sql,
            {
                "source_ids": [batch[i][1] for i in known],
                "commit_lsns": [batch[i][0].commit_lsn for i in known],
                "seqs": [batch[i][0].seq for i in known],
                "occurred_ats": [f"{times[i]}+00" for i in known],
            },
        )
        stored = {known[row[0] - 1] for row in rows}
        if stored:
            log.warning(
                "stream %s holds %d record(s) of this batch twice (already in the store: a "
                "daemon published a flush again after the duplicate window); not written again",
                self._stream,
                len(stored),
            )
        fresh: dict[str, list[ActivityRecord]] = {}
        for i, (record, source) in enumerate(batch):
            if i not in stored:
                fresh.setdefault(source, []).append(record)
        return fresh

    def _store_floor(self, store: Sink, floor: int) -> None:
        store.execute(
            self._floor_sql,
            {"stream": self._stream, "consumer": self.options.consumer, "floor_seq": floor},
        )
        store.commit()


# The records' source_id for the writes that follow, until the transaction ends (the column's
# default; sql/migrations/0025_record_sources.sql).
_SET_SOURCE = sql.Composed(
    [sql.SQL("SELECT set_config('activity_cdc.source_id', %(source_id)s, true)")]
)


def _order(record: ActivityRecord) -> tuple[int, str, int]:
    # The chain orders a batch by (commit_lsn, seq); records of different sources interleave.
    high, _, low = record.commit_lsn.partition("/")
    return (int(high, 16) << 32 | int(low, 16), record.occurred_at, record.seq)
