"""The pipeline's health as the store shows it (the dashboard, ``GET /api/health``): where the
daemon is (its checkpoint, written with the records it covers), how far behind the slot is,
records per second from the per-minute rollups, changes parked as dead letters, the hash
chain's head and its last verification (``cdc verify-chain`` keeps each outcome).

Read with the reader's connection to the sink database, nothing else: the slot is seen through
``pg_replication_slots`` (readable by every role) when the records live in the source database,
the default; with a separate sink database the slot is not visible from there and
``slot`` is None (``cdc lag`` on the source tells).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from cdc.sqlfiles import sql_text
from cdc.store.reader import Store

# Records per second: the per-minute rollups of the minute under way and the whole minutes
# before it, RATE_MINUTES of them in all.
RATE_MINUTES = 5


@dataclass(frozen=True, slots=True)
class SlotStatus:
    slot: str
    active: bool
    wal_status: str | None
    confirmed_flush_lsn: str | None
    current_lsn: str
    retained_bytes: int | None
    unconfirmed_bytes: int | None


@dataclass(frozen=True, slots=True)
class PipelineHealth:
    checked_at: datetime
    # the daemon's checkpoint: the last source commit recorded (and acknowledged after it)
    last_commit_lsn: str | None
    acknowledged_lsn: str | None
    last_commit_at: datetime | None
    last_commit_age_seconds: float | None
    slot: SlotStatus | None  # None: not visible from the sink database
    records_per_second: float  # over the last RATE_MINUTES (the current one partly)
    records_last_hour: int  # in the minute under way and the 59 before
    dead_letters: int | None  # None: the reader may not see them
    chain_position: int | None  # None: no hash chain (or not visible)
    chain_updated_at: datetime | None
    # the last `cdc verify-chain` (None: never run, or not visible)
    chain_verified_at: datetime | None = None
    chain_intact: bool | None = None
    chain_checked: int | None = None
    chain_problem: str | None = None

    @property
    def lag_bytes(self) -> int | None:
        return None if self.slot is None else self.slot.unconfirmed_bytes

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("checked_at", "last_commit_at", "chain_updated_at", "chain_verified_at"):
            moment = getattr(self, name)
            data[name] = None if moment is None else moment.isoformat()
        data["lag_bytes"] = self.lag_bytes
        data["lag_seconds"] = self.last_commit_age_seconds
        return data


def readable_tables(store: Store) -> frozenset[str]:
    """Which of the tables the health reads only when it may (the dead letters, the chain's
    head and verifications: a reader may be denied them, an older store may lack them)
    exist and may be read. Ask once in a while (:func:`pipeline_health` takes the answer):
    a statement that names a table it may not read fails whole."""
    names = _optional_tables(store)
    rows = store.fetch(
        sql.SQL(
            "SELECT name FROM unnest(%(names)s::text[]) AS name, "
            "to_regclass(quote_ident(%(schema)s) || '.' || quote_ident(name)) AS found "
            "WHERE found IS NOT NULL AND has_table_privilege(found, 'SELECT')"
        ),
        {"names": list(names.values()), "schema": store.schema},
    )
    found = {row[0] for row in rows}
    return frozenset(key for key, name in names.items() if name in found)


def _optional_tables(store: Store) -> dict[str, str]:
    return {
        "dead_letters": "dead_letters",
        "chain_head": f"{store.settings.sink.table_name}_chain_head",
        "chain_verifications": "chain_verifications",
    }


def pipeline_health(store: Store, *, readable: frozenset[str] | None = None) -> PipelineHealth:
    """The health in one statement (one round trip, one snapshot); ``readable``: what
    :func:`readable_tables` answered (asked here when not given: one round trip more)."""
    if readable is None:
        readable = readable_tables(store)
    rows = store.fetch(_health_query(store, readable), {"slot": store.settings.source.slot})
    return _health_of(rows[0])


def _health_query(store: Store, readable: frozenset[str]) -> sql.Composed:
    schema = sql.Identifier(store.schema)
    names = _optional_tables(store)

    def table(key: str) -> sql.Composable:
        return sql.SQL("{}.{}").format(schema, sql.Identifier(names[key]))

    dead_letters: sql.Composable = sql.SQL("NULL::bigint")
    if "dead_letters" in readable:
        dead_letters = sql.SQL("(SELECT count(*) FROM {})").format(table("dead_letters"))
    head: sql.Composable = sql.SQL(
        "(SELECT NULL::bigint AS position, NULL::timestamptz AS updated_at)"
    )
    if "chain_head" in readable:
        head = sql.SQL("(SELECT position, updated_at FROM {})").format(table("chain_head"))
    verification: sql.Composable = sql.SQL(
        "(SELECT NULL::timestamptz AS verified_at, NULL::boolean AS intact, "
        "NULL::bigint AS checked, NULL::text AS problem)"
    )
    if "chain_verifications" in readable:
        verification = sql.SQL(
            "(SELECT verified_at, intact, checked, problem FROM {} "
            "ORDER BY verified_at DESC LIMIT 1)"
        ).format(table("chain_verifications"))
    return sql.SQL(
        "SELECT now(), c.commit_lsn::text, c.end_lsn::text, c.commit_time, "
        "s.slot_name, s.active, s.wal_status, s.confirmed_flush_lsn, s.current_lsn, "
        "s.retained_bytes, s.unconfirmed_bytes, rate.recent, rate.last_hour, {dead_letters}, "
        "h.position, h.updated_at, v.verified_at, v.intact, v.checked, v.problem "
        "FROM (SELECT) AS one "
        "LEFT JOIN {checkpoints} AS c ON c.slot_name = %(slot)s "
        "LEFT JOIN ({slot_lag}) AS s ON true "
        "LEFT JOIN (SELECT coalesce(sum(n) FILTER (WHERE bucket >= date_trunc('minute', now()) "
        "- {rate_back}), 0)::bigint AS recent, coalesce(sum(n), 0)::bigint AS last_hour "
        "FROM {per_minute} WHERE bucket >= date_trunc('minute', now()) - interval '59 minutes'"
        ") AS rate ON true "
        "LEFT JOIN {head} AS h ON true LEFT JOIN {verification} AS v ON true"
    ).format(
        dead_letters=dead_letters,
        checkpoints=sql.SQL("{}.checkpoints").format(schema),
        slot_lag=sql.SQL(sql_text("slot_lag.sql")),
        rate_back=sql.Literal(timedelta(minutes=RATE_MINUTES - 1)),
        per_minute=sql.SQL("{}.activity_per_minute").format(schema),
        head=head,
        verification=verification,
    )


def _health_of(row: tuple[Any, ...]) -> PipelineHealth:
    now, commit_lsn, end_lsn, commit_time = row[:4]
    slot_name, active, wal_status, confirmed, current, retained, unconfirmed = row[4:11]
    recent, last_hour, dead_letters, position, updated_at = row[11:16]
    verified_at, intact, checked, problem = row[16:20]
    slot = None
    if slot_name is not None:
        slot = SlotStatus(slot_name, active, wal_status, confirmed, current, retained, unconfirmed)
    rate_start = now.replace(second=0, microsecond=0) - timedelta(minutes=RATE_MINUTES - 1)
    elapsed = (now - rate_start).total_seconds()
    return PipelineHealth(
        checked_at=now,
        last_commit_lsn=commit_lsn,
        acknowledged_lsn=end_lsn,
        last_commit_at=commit_time,
        last_commit_age_seconds=(
            None if commit_time is None else max(0.0, (now - commit_time).total_seconds())
        ),
        slot=slot,
        records_per_second=recent / max(elapsed, 1.0),
        records_last_hour=last_hour,
        dead_letters=None if dead_letters is None else int(dead_letters),
        chain_position=None if position is None else int(position),
        chain_updated_at=updated_at,
        chain_verified_at=verified_at,
        chain_intact=intact,
        chain_checked=None if checked is None else int(checked),
        chain_problem=problem,
    )
