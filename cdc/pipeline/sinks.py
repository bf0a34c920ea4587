"""The sink contract: what the daemon loop hands a sink, and what "durable" means.

Two implementations: :class:`cdc.pipeline.sink.Sink` (records into a PostgreSQL activity store) and
:class:`cdc.pipeline.jetstream_sink.JetStreamSink` (records onto a NATS JetStream stream). The loop
sees
only :class:`RecordSink`, through :class:`cdc.pipeline.sink.SinkWriter`, which calls it from one
background thread.

The contract, for every implementation:

* ``write(flush)`` is called with the flushes of :class:`cdc.pipeline.batching.Batcher`, in order.
The
  records of a flush are in commit order (``commit_lsn``, then ``seq``). A flush without a
  checkpoint is a chunk of a source transaction larger than a batch; more chunks and finally
  the one with the checkpoint follow.
* **Durable**: when ``write`` returns for a flush *with* a checkpoint, every record of it and
  of the chunks before it is stored where a crash of this process, of the machine, or (for
  JetStream) of a minority of the cluster's nodes cannot lose it, **and** the checkpoint is
  stored, so that ``read_checkpoint`` after a restart returns it or a later one. Only then does
  the loop acknowledge ``checkpoint.end_lsn`` to PostgreSQL.
* A record stored twice is never visible twice: after a crash the slot sends again what was
  not acknowledged, and the sink recognises what it already holds (the PostgreSQL sink by
  the checkpoint written in the same transaction, JetStream by ``Nats-Msg-Id`` and the
  key-value checkpoint).
* ``write`` raises a :class:`~cdc.errors.CdcError` when it cannot make that promise; the loop
  then acknowledges nothing more and stops (``ConnectError`` and its kind are retried by the
  supervisor). Memory: a sink holds at most one flush.
* ``read_checkpoint`` gives the last source commit stored; the loop starts the slot there and
  skips transactions at or below its ``commit_lsn``. ``read_modes`` gives the capture mode
  (``shadow``/``cdc``) of each table as the cutover markers stored so far left it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from cdc.lsn import Lsn
from cdc.pipeline.batching import Flush

if TYPE_CHECKING:
    from cdc.config import Settings


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    commit_lsn: Lsn
    end_lsn: Lsn
    commit_time: datetime | None


class RecordSink(Protocol):
    """Where the daemon's records go; see the module docstring for the contract."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def read_checkpoint(self) -> StoredCheckpoint | None: ...

    def read_modes(self) -> dict[tuple[str, str], str]: ...

    def write(self, flush: Flush) -> int:
        """Store the flush (see the contract); returns how many records were parked as dead
        letters instead (0 for a sink that has none)."""
        ...


def system_identifier(conn: Any) -> str:
    """The source cluster's database system identifier (pg_control), on a source connection."""
    row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    return str(row[0])


def source_id(system_id: str, slot: str) -> str:
    """What names a source in the store's key and in a JetStream message id: ``<database
    system identifier>:<slot>``."""
    return f"{system_id}:{slot}"


def open_sink(settings: Settings, *, system_id: str, database: str) -> RecordSink:
    """The configured sink, not yet opened. ``system_id`` and ``database`` name the source
    (JetStream puts them in each message's id and subject)."""
    if settings.sink.kind == "jetstream":
        from cdc.pipeline.jetstream_sink import JetStreamSink

        return JetStreamSink(
            settings.sink,
            slot=settings.source.slot,
            system_id=system_id,
            source_name=settings.sink.source_name or database,
        )
    from cdc.pipeline.sink import Sink

    return Sink(
        settings.sink_dsn,
        schema=settings.sink.schema_name,
        table=settings.sink.table_name,
        slot=settings.source.slot,
        hash_chain=settings.sink.hash_chain,
        dead_letter=settings.sink.on_refused == "dead_letter",
        source_id=source_id(system_id, settings.source.slot),
    )
