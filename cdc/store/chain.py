"""The records' hash chain: the canonical text of a record (computed by the daemon as it writes,
cdc.pipeline.sink) and its recomputation from what is stored (``cdc verify-chain``).

Every record stores ``chain_position``, ``prev_hash`` and ``hash``, in the order the sinks
write them (``chain_position``; for one daemon that is commit order, ``(commit_lsn, seq)``)::

    hash = sha256(prev_hash || canonical_text(fields))

**The canonical text** (this module is its reference; docs/tamper-evidence.md says the same)
is 21 fields, in this order: ``occurred_at``, ``recorded_at``, ``source``, ``operation``,
``action``, ``category``, ``severity``, ``schema_name``, ``table_name``, ``entity_type``,
``entity_id``, ``actor_id``, ``context``, ``old``, ``new``, ``changes``, ``summary``, ``xid``,
``commit_lsn``, ``seq``, ``chain_position``. Each field is ``<length in UTF-8 bytes>:<text>``
and a NULL is ``-`` (length prefixes make the encoding unambiguous whatever the values hold);
the fields are concatenated with nothing between them. A field's text is what PostgreSQL's own
output functions print for the stored value:

* timestamps in UTC with microseconds, ``YYYY-MM-DDTHH:MM:SS.ffffff`` (``to_char(ts AT TIME
  ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')``; :func:`utc_text`);
* the documents as ``::text``: ``old``, ``new`` and ``changes`` are json (migration 0022), so
  their text is exactly what the daemon sent; ``context`` is jsonb. The daemon builds every
  document in jsonb's own text form (keys by length then bytes, ``", "`` and ``": "``, numbers
  without exponent, zero never negative; cdc.pipeline.values), which is also what the jsonb
  columns of a store before 0022 printed, and what 0022's conversion stored: the daemon hashes
  the text it sends, without a parse, and chains verify across the upgrade;
* ``xid``, ``seq``, ``chain_position`` in decimal; ``commit_lsn`` as ``pg_lsn`` prints it
  (``16/B374D848``); text columns as they are.

The first record of the chain has ``prev_hash`` = 32 zero bytes and position 1; positions go
up by one without gaps. ``<records>_chain_head`` (one row) holds the last record's hash,
position, commit LSN and seq; the sink moves it in the transaction of the records and the
checkpoint, with the head's row locked so two writers take turns (cdc.pipeline.sink).

Records written before the daemon computed the chain (by the SQL of migration 0011, in the
database) have exactly the same canonical text: the chain goes on across the change without a
migration, and this verifier checks both alike.

The verifier recomputes each hash **here, in Python**, from the stored values as PostgreSQL's
built-in output functions render them (``jsonb::text``, timestamps in UTC): it trusts no
function of the activity schema, which whoever tampered with the records could have replaced.
It reads the head and the records in one ``REPEATABLE READ`` snapshot, so a daemon writing
meanwhile is not mistaken for tampering.

What a break means:

* a record whose values no longer give its hash was **changed** after it was written (or
  inserted out of band with a made-up hash);
* a record chained to nothing it follows: records before it were **deleted**, or the record
  before it was changed and hashed again; when the record after it is chained to the one
  before it, it was **inserted** out of band;
* the last record is not the head the daemon recorded: records were **deleted from the end**
  (or inserted after it).

The chain proves nothing against someone who can rewrite every record *and* the head: keep
the head hash this command prints somewhere else (a ticket, another system) and compare.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from cdc.connect import server_message
from cdc.errors import ChainBroken, ConnectError, SinkError

GENESIS = bytes(32)
FETCH_ROWS = 5000

# The canonical fields in the order of sql/migrations/0011_hash_chain.sql's chain_text(), each
# as text through a built-in output function only.
_TIMESTAMP = 'YYYY-MM-DD"T"HH24:MI:SS.US'
_CANONICAL_COLUMNS = sql.SQL(", ").join(
    [
        sql.SQL("to_char(occurred_at AT TIME ZONE 'UTC', {})").format(sql.Literal(_TIMESTAMP)),
        sql.SQL("to_char(recorded_at AT TIME ZONE 'UTC', {})").format(sql.Literal(_TIMESTAMP)),
        *(
            sql.Identifier(name)
            for name in (
                "source",
                "operation",
                "action",
                "category",
                "severity",
                "schema_name",
                "table_name",
                "entity_type",
                "entity_id",
                "actor_id",
            )
        ),
        *(
            sql.SQL("{}::text").format(sql.Identifier(name))
            for name in ("context", "old", "new", "changes")
        ),
        sql.Identifier("summary"),
        *(
            sql.SQL("{}::text").format(sql.Identifier(name))
            for name in ("xid", "commit_lsn", "seq", "chain_position")
        ),
    ]
)
_FIELD_COUNT = 21
# Where occurred_at, commit_lsn, seq and chain_position are among those fields.
_KEY_FIELDS = (0, 18, 19, 20)


def canonical_text(values: tuple[str | None, ...]) -> bytes:
    """The bytes hashed for one record: each field as ``<bytes>:<text>``, ``-`` for NULL."""
    parts = []
    for value in values:
        if value is None:
            parts.append("-")
        elif value.isascii():  # most fields: characters are bytes, one encode at the end
            parts.append(f"{len(value)}:{value}")
        else:
            parts.append(f"{len(value.encode())}:{value}")
    return "".join(parts).encode()


def link_hash(prev_hash: bytes, values: tuple[str | None, ...]) -> bytes:
    return hashlib.sha256(prev_hash + canonical_text(values)).digest()


def utc_text(moment: datetime) -> str:
    """A timestamp's canonical text: UTC, microseconds, ``2024-05-06T07:08:09.000123``."""
    moment = moment.astimezone(UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}"
    )


def iso_utc_text(text: str) -> str | None:
    """The canonical text of an ISO 8601 timestamp with its offset (how the daemon writes
    ``occurred_at``), or None when only the server can say what it means (no offset, or a
    form of PostgreSQL's own such as ``epoch``)."""
    if _ISO_UTC.fullmatch(text):
        return text[:26]  # the common case: a commit time in UTC with microseconds
    if not _ISO_OFFSET.fullmatch(text):
        # no offset (the sink session's TimeZone would decide), more than microseconds (the
        # server rounds, Python truncates), or a form only PostgreSQL reads
        return None
    try:
        return utc_text(datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        return None  # out of Python's range: the server says


_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")
_ISO_OFFSET = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d{1,6})?([+-]\d\d:\d\d|Z)")


@dataclass(frozen=True, slots=True)
class ChainedRecord:
    """One record as the verifier reads it: its key, where it is, its hashes and fields."""

    commit_lsn: str
    seq: int
    occurred_at: str
    partition: str
    position: int | None
    prev_hash: bytes | None
    hash: bytes | None
    values: tuple[str | None, ...]

    def name(self) -> str:
        return (
            f"the record at commit {self.commit_lsn} seq {self.seq} "
            f"(occurred_at {self.occurred_at} UTC, {self.partition})"
        )


@dataclass
class ChainReport:
    """What ``cdc verify-chain`` found; ``problem`` is None when the chain holds."""

    checked: int = 0
    unchained: int = 0  # records before the chain starts (written before it existed, or off)
    first: ChainedRecord | None = None
    last: ChainedRecord | None = None
    starts_at_genesis: bool = True
    head: bytes = GENESIS
    head_position: int = 0
    head_at: tuple[str, int] | None = None
    problem: str | None = None
    kind: str | None = None  # changed | inserted | deleted | unhashed | truncated
    culprit: ChainedRecord | None = None
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "intact": self.problem is None,
            "checked": self.checked,
            "unchained_before": self.unchained,
            "first": None if self.first is None else _key(self.first),
            "last": None if self.last is None else _key(self.last),
            "starts_at_genesis": self.starts_at_genesis,
            "head_hash": self.head.hex(),
            "head_position": self.head_position,
            "problem": self.problem,
            "kind": self.kind,
            "record": None if self.culprit is None else _key(self.culprit),
            "notes": self.notes,
        }


def _key(record: ChainedRecord) -> dict[str, Any]:
    return {
        "commit_lsn": record.commit_lsn,
        "seq": record.seq,
        "occurred_at": record.occurred_at,
        "partition": record.partition,
        "chain_position": record.position,
        "hash": None if record.hash is None else record.hash.hex(),
    }


def verify_chain(
    conn: psycopg.Connection[Any], schema: str, table: str, *, since: datetime | None = None
) -> ChainReport:
    """Recompute the chain of ``schema.table`` (from the first record at or after ``since``,
    trusting its link to the one before). ``conn`` must not be in a transaction."""
    report = ChainReport()
    try:
        conn.autocommit = False
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        head_row = conn.execute(
            sql.SQL("SELECT hash, position, commit_lsn::text, seq FROM {}.{} WHERE one").format(
                sql.Identifier(schema), sql.Identifier(f"{table}_chain_head")
            )
        ).fetchone()
        if head_row is None:
            raise ChainBroken(
                f"{schema}.{table}_chain_head has no row: the chain's head was deleted; "
                "restore it from a backup (the records' own links are still checked by "
                "cdc verify-chain after that)"
            )
        report.head = bytes(head_row[0])
        report.head_position = int(head_row[1])
        report.head_at = None if head_row[2] is None else (head_row[2], int(head_row[3]))
        start = _start_of(conn, schema, table, since) if since is not None else None
        if since is not None and start is None:
            report.notes.append(f"no record at or after {since.isoformat()}")
        elif since is None or start is not None:
            _walk(_records(conn, schema, table, start), report, trust_first=since is not None)
        if report.problem is None:
            _check_tail(report)
        conn.rollback()
    except psycopg.errors.UndefinedTable:
        raise SinkError(
            f"{schema}.{table} has no hash chain (its migration 0011 is not applied); "
            'run "cdc setup"'
        ) from None
    except psycopg.errors.UndefinedColumn:
        raise SinkError(
            f'{schema}.{table} has no prev_hash/hash columns; run "cdc setup"'
        ) from None
    except psycopg.OperationalError as exc:
        raise ConnectError(f"connection to the sink database lost: {exc}") from None
    except psycopg.Error as exc:
        message = server_message(exc)
        raise SinkError(f"cannot read {schema}.{table}: {message}") from None
    return report


def record_verification(
    conn: psycopg.Connection[Any], schema: str, report: ChainReport, *, since: datetime | None
) -> str | None:
    """Keep the outcome of a check in ``<schema>.chain_verifications`` (migration 0020), where
    the dashboard reads when the chain was last verified. Returns why it could not (a store
    older than 0020, a role without INSERT on it): the check itself stands either way."""
    try:
        with conn.transaction():
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.chain_verifications "
                    "(intact, checked, since, head_position, problem) VALUES (%s, %s, %s, %s, %s)"
                ).format(sql.Identifier(schema)),
                (report.problem is None, report.checked, since, report.head_position,
                 report.problem),
            )  # fmt: skip
    except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege) as exc:
        return (
            f"the result was not kept for the dashboard ({server_message(exc)}); "
            'run it as the store\'s owner after "cdc setup", which creates chain_verifications'
        )
    except psycopg.Error as exc:
        return f"the result was not kept for the dashboard: {server_message(exc)}"
    return None


def _start_of(
    conn: psycopg.Connection[Any], schema: str, table: str, since: datetime
) -> tuple[str, int] | None:
    row = conn.execute(
        sql.SQL(
            # r.-qualified: an output column named commit_lsn (text) would order as text
            "SELECT r.commit_lsn::text, r.seq FROM {}.{} r WHERE r.occurred_at >= %s "
            "ORDER BY r.occurred_at, r.commit_lsn, r.seq LIMIT 1"
        ).format(sql.Identifier(schema), sql.Identifier(table)),
        (since,),
    ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def _records(
    conn: psycopg.Connection[Any], schema: str, table: str, start: tuple[str, int] | None
) -> Iterator[ChainedRecord]:
    where: sql.Composable = sql.SQL("")
    params: tuple[Any, ...] = ()
    if start is not None:
        where = sql.SQL(
            "WHERE r.chain_position IS NULL OR r.chain_position >= (SELECT s.chain_position "
            "FROM {}.{} s WHERE (s.commit_lsn, s.seq) = (%s::pg_lsn, %s))"
        ).format(sql.Identifier(schema), sql.Identifier(table))
        params = start
    query = sql.SQL(
        # The chain's own order: a daemon writes in commit order, but `cdc ingest` writes the
        # records of many sources as their batches commit (docs/scale-out.md). Records from
        # before the chain (no position) first. r.-qualified: the output columns commit_lsn
        # and seq are text, and ORDER BY would take them (0/10000000 before 0/FFFFFFF).
        "SELECT {}, r.prev_hash, r.hash, r.tableoid::regclass::text FROM {}.{} r {} "
        "ORDER BY r.chain_position NULLS FIRST, r.commit_lsn, r.seq"
    ).format(_CANONICAL_COLUMNS, sql.Identifier(schema), sql.Identifier(table), where)
    with conn.cursor(name="activity_cdc_verify_chain") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(query, params)
        for row in cur:
            values = tuple(row[:_FIELD_COUNT])
            prev_hash, hash_, partition = row[_FIELD_COUNT:]
            occurred_at, commit_lsn, seq, position = (values[i] for i in _KEY_FIELDS)
            yield ChainedRecord(
                commit_lsn=commit_lsn,
                seq=int(seq),
                occurred_at=occurred_at,
                partition=partition,
                position=None if position is None else int(position),
                prev_hash=None if prev_hash is None else bytes(prev_hash),
                hash=None if hash_ is None else bytes(hash_),
                values=values,
            )


def _walk(records: Iterator[ChainedRecord], report: ChainReport, *, trust_first: bool) -> None:
    before: ChainedRecord | None = None  # the record before `prev`
    prev: ChainedRecord | None = None
    for record in records:
        if prev is None and record.hash is None:
            report.unchained += 1  # before the chain: written before it existed
            continue
        report.checked += 1
        if prev is None:
            report.first = record
            report.starts_at_genesis = record.prev_hash == GENESIS
            if not report.starts_at_genesis and not trust_first:
                report.notes.append(
                    f"the chain starts at {record.name()}, which is chained to an earlier "
                    "record no longer stored (old partitions removed by retention, or records "
                    "deleted): compare its prev_hash with a head you kept"
                )
        if record.hash is None or record.prev_hash is None:
            _broken(
                report,
                "unhashed",
                record,
                f"{record.name()} has no hash: it was inserted out of band (or by a daemon with "
                "[sink] hash_chain = false)",
            )
            return
        if link_hash(record.prev_hash, record.values) != record.hash:
            _broken(
                report,
                "changed",
                record,
                f"{record.name()} was changed after it was written: its stored values no longer "
                "give its hash (or it was inserted out of band with a made-up hash)",
            )
            return
        if prev is not None and record.prev_hash != prev.hash:
            _classify_break(report, before, prev, record, next(records, None))
            return
        if prev is not None and record.position != (prev.position or 0) + 1:
            _broken(
                report,
                "deleted",
                record,
                f"{record.name()} is chain position {record.position} but follows position "
                f"{prev.position}: its link holds, so the positions were rewritten",
            )
            return
        before, prev = prev, record
        report.last = record


def _classify_break(
    report: ChainReport,
    before: ChainedRecord | None,
    prev: ChainedRecord,
    record: ChainedRecord,
    following: ChainedRecord | None,
) -> None:
    """``record`` is not chained to ``prev``, the record stored before it. Which of them, if
    any, was touched: the positions (hashed, numbered without gaps) and the links around say."""
    if following is not None and following.prev_hash == prev.hash:
        _broken(
            report,
            "inserted",
            record,
            f"{record.name()} was inserted out of band: the record after it is chained to the "
            "one before it",
        )
    elif before is not None and record.prev_hash == before.hash:
        _broken(
            report,
            "inserted",
            prev,
            f"{prev.name()} was inserted out of band: the record after it is chained to the one "
            "before it",
        )
    elif record.position is not None and prev.position is not None:
        missing = record.position - prev.position - 1
        if missing > 0:
            _broken(
                report,
                "deleted",
                record,
                f"{missing} record(s) were deleted before {record.name()}: it is chain position "
                f"{record.position}, the record stored before it is position {prev.position}",
            )
        else:
            _broken(
                report,
                "changed",
                prev,
                f"{prev.name()} was changed and hashed again: the record after it is chained to "
                "its original hash",
            )
    else:
        _broken(
            report,
            "deleted",
            record,
            f"the chain breaks before {record.name()}: it is chained to a record that is no "
            f"longer there",
        )


def _broken(report: ChainReport, kind: str, record: ChainedRecord, problem: str) -> None:
    report.kind = kind
    report.culprit = record
    report.problem = problem


def _check_tail(report: ChainReport) -> None:
    """The last record must be the head the daemon recorded with it."""
    last_hash = GENESIS if report.last is None else report.last.hash
    if last_hash == report.head:
        return
    if report.last is None:
        if report.unchained or report.head_at is None:
            return  # nothing chained yet
        report.kind = "truncated"
        report.problem = (
            f"no chained record is left, but the daemon's last record was at commit "
            f"{report.head_at[0]} seq {report.head_at[1]} (chain position "
            f"{report.head_position}): the records were deleted"
        )
        return
    last = report.last
    if report.head_position > (last.position or 0):
        report.kind = "truncated"
        report.culprit = last
        report.problem = (
            f"{report.head_position - (last.position or 0)} record(s) after {last.name()} were "
            f"deleted: the daemon's last record is chain position {report.head_position}"
            + (
                f" (commit {report.head_at[0]} seq {report.head_at[1]})"
                if report.head_at is not None
                else ""
            )
        )
    else:
        report.kind = "inserted"
        report.culprit = last
        report.problem = (
            f"{last.name()} is after the head the daemon recorded (chain position "
            f"{report.head_position}): it was inserted out of band, or the head was changed"
        )
