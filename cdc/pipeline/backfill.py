"""``cdc backfill --table T``: a baseline record per existing row (``operation = 'snapshot'``),
read from a snapshot that is consistent with the replication stream.

How nothing is missed or doubled between the baseline and the stream: a temporary logical
slot is created with an exported snapshot (``CREATE_REPLICATION_SLOT ... (SNAPSHOT
'export')``). Its consistent point ``C`` is an LSN such that the snapshot holds exactly the
transactions that commit before ``C``, and every transaction that commits after ``C`` is
decoded after it. The rows are read in that snapshot (``SET TRANSACTION SNAPSHOT``) and
recorded with ``commit_lsn = C``: the baseline of a row followed by the daemon's (non-snapshot)
records of that row with ``commit_lsn >= C`` replays to the row as it is now. ``>=``: C is
where the last WAL record the snapshot saw ends, a record's ``commit_lsn`` is where its
commit record starts, so a transaction committed right at C has ``commit_lsn = C`` and is not
in the snapshot (it sorts among the baseline by ``seq``: replay the baseline first). The
temporary slot is only for the consistent point; it is dropped when the connection closes and
never streamed.

The rows become records through the daemon's own mapping (:class:`ActivityMapper`: entity,
actor, redaction, the same JSON values as ``to_jsonb``) and are written through the daemon's
sink (COPY, the hash chain, the rollups), all in one sink transaction: a backfill that fails or
is killed leaves nothing, and running it again takes a new snapshot. In the chain the baseline
sits where it was committed (after the records written before it), its ``commit_lsn`` is its
place in the source's history. While that transaction is open, the daemon's next batch waits
for the chain's head.

The same command re-baselines a table after an invalidated slot (docs/operations.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings, TableRules
from cdc.connect import connect
from cdc.dsn import connect_failure, describe_target, require_parsable
from cdc.errors import ConfigError, ConnectError, PrerequisiteError
from cdc.lsn import Lsn, format_lsn
from cdc.pipeline.activity import ActivityMapper, ActivityRecord
from cdc.pipeline.batching import Flush
from cdc.pipeline.catalog import Catalog
from cdc.pipeline.changes import RelationInfo, RowChange, TransactionInfo
from cdc.pipeline.sink import Sink
from cdc.pipeline.sinks import source_id, system_identifier
from cdc.sqlfiles import sql_text

log = logging.getLogger(__name__)

SNAPSHOT = "snapshot"


@dataclass(frozen=True)
class BackfillResult:
    table: str
    records: int
    consistent_lsn: str  # the snapshot's consistent point: the baseline's commit_lsn
    snapshot_time: datetime


@dataclass
class _Snapshot:
    replication: psycopg.Connection[Any]
    consistent_lsn: int
    name: str


def _export_snapshot(dsn: str) -> _Snapshot:
    require_parsable(dsn, "source")
    try:
        conn = psycopg.connect(
            dsn,
            replication="database",
            autocommit=True,
            connect_timeout=10,
            application_name="activity-cdc backfill",
        )
    except psycopg.Error as exc:
        raise ConnectError(
            f"cannot open a replication connection to {describe_target(dsn)}: "
            f"{connect_failure(exc, dsn)}; check [source] dsn or CDC_SOURCE_DSN"
        ) from None
    slot = f"cdc_backfill_{os.getpid()}"
    try:
        row = conn.execute(
            sql.SQL(
                "CREATE_REPLICATION_SLOT {} TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')"
            ).format(sql.Identifier(slot))
        ).fetchone()
    except psycopg.Error as exc:
        conn.close()
        raise PrerequisiteError(
            f"cannot take a snapshot consistent with the stream (a temporary replication "
            f"slot): {(exc.diag.message_primary or str(exc)).strip()}; backfill needs a role "
            "with REPLICATION and a free replication slot (max_replication_slots)"
        ) from None
    assert row is not None
    return _Snapshot(conn, int(Lsn.parse(row[1])), str(row[2]))


def _relation(conn: psycopg.Connection[Any], rules: TableRules) -> RelationInfo:
    row = conn.execute(
        sql_text("backfill_columns.sql"), {"schema": rules.schema_name, "table": rules.table_name}
    ).fetchone()
    if row is None:
        raise ConfigError(f"table {rules.name} does not exist in the source database")
    oid, names, type_oids = int(row[0]), tuple(row[1]), tuple(int(t) for t in row[2])
    keys = conn.execute(sql_text("primary_key_of.sql"), {"oid": oid}).fetchone()
    key_columns = tuple(keys[0]) if keys and keys[0] else None
    return RelationInfo(
        relation_id=oid,
        schema=rules.schema_name,
        table=rules.table_name,
        replica_identity="f",
        column_names=names,
        type_oids=type_oids,
        key_columns=key_columns,
        key_positions=tuple(names.index(k) for k in key_columns) if key_columns else None,
    )


def snapshot_record(record: ActivityRecord, action: str, severity: str) -> ActivityRecord:
    """An insert's record as a baseline: the row as it was at the snapshot."""
    summary = (record.summary or "").split(" created", 1)[0] + f" at the baseline ({action})"
    return record._replace(
        operation=SNAPSHOT, action=action, severity=severity, summary=summary, actor_id=None
    )


def backfill(
    settings: Settings,
    table: str,
    *,
    chunk_rows: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> BackfillResult:
    """Record a baseline of every row of ``table`` (one configured table); see the module."""
    found = settings.configured_tables(table)
    if len(found) != 1:
        raise ConfigError(
            f"table {table!r} is ambiguous: {', '.join(r.name for r in found)}; give schema.table"
        )
    rules = found[0]
    snapshot = _export_snapshot(settings.source.dsn)
    try:
        with connect(settings.source.dsn, autocommit=False) as source:
            source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            source.execute(
                sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot.name))
            )
            relation = _relation(source, rules)
            row = source.execute("SELECT transaction_timestamp()").fetchone()
            assert row is not None
            snapshot_time = row[0]
            return _write(
                settings, rules, relation, source, snapshot, snapshot_time, chunk_rows, progress
            )
    finally:
        snapshot.replication.close()  # drops the temporary slot


def _rows(
    source: psycopg.Connection[Any], relation: RelationInfo, chunk_rows: int
) -> Iterator[list[tuple[str | None, ...]]]:
    columns = sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(name)) for name in relation.column_names
    )
    query = sql.SQL("SELECT {} FROM {}.{}").format(
        columns, sql.Identifier(relation.schema), sql.Identifier(relation.table)
    )
    with source.cursor(name="cdc_backfill") as cursor:
        cursor.itersize = chunk_rows
        cursor.execute(query)
        while rows := cursor.fetchmany(chunk_rows):
            yield rows


def _write(
    settings: Settings,
    rules: TableRules,
    relation: RelationInfo,
    source: psycopg.Connection[Any],
    snapshot: _Snapshot,
    snapshot_time: datetime,
    chunk_rows: int,
    progress: Callable[[int], None] | None,
) -> BackfillResult:
    mapper = ActivityMapper(settings, rules_by_relation_id={relation.relation_id: rules})
    catalog = Catalog(settings.source.dsn)
    try:
        catalog.resolve_types(mapper.types, list(relation.type_oids))
    finally:
        catalog.close()
    action = (rules.action or "{entity_type}.{operation}").format(
        entity_type=rules.entity_type or relation.table,
        operation=SNAPSHOT,
        table=relation.table,
        schema=relation.schema,
    )
    severity = "info"
    transaction = TransactionInfo(
        xid=0, commit_lsn=snapshot.consistent_lsn, commit_time=snapshot_time
    )
    sink = Sink(
        settings.sink_dsn,
        schema=settings.sink.schema_name,
        table=settings.sink.table_name,
        slot=settings.source.slot,
        hash_chain=settings.sink.hash_chain,
        source_id=source_id(system_identifier(source), settings.source.slot),
    )
    sink.open()
    written = 0
    try:
        for chunk, rows in enumerate(_rows(source, relation, chunk_rows)):
            records: list[ActivityRecord] = []
            for values in rows:
                change = RowChange(
                    transaction, written + len(records), relation, "insert", None, values
                )
                record = mapper.map(change)
                if record is not None:
                    records.append(snapshot_record(record, action, severity))
            sink.write(Flush(records, None, chunk_index=chunk, rows_before=written))
            written += len(records)
            if progress is not None:
                progress(written)
        sink.commit()
    finally:
        sink.close()
    log.info(
        "backfill of %s: %d baseline records at %s",
        rules.name,
        written,
        format_lsn(snapshot.consistent_lsn),
    )
    return BackfillResult(rules.name, written, format_lsn(snapshot.consistent_lsn), snapshot_time)
