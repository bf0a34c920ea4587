"""The activity store on a real PostgreSQL: monthly partitions and their maintenance, the
append-only guard, rollups that equal counting the records, following new records, and the
indexes the hot queries use."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from cdc.config import Settings
from cdc.control.partitions import DETACHED_MARK, apply_maintenance, plan_maintenance
from cdc.control.setup import setup
from cdc.errors import SinkError
from cdc.pipeline.activity import ActivityRecord
from cdc.pipeline.batching import Checkpoint, Flush
from cdc.pipeline.sink import Sink
from cdc.store import STORED_COLUMNS, RecordCursor, RecordFilter, Store, open_store, queries
from cdc.store.indexes import values_search_indexes
from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, setup_and_settings

pytestmark = pytest.mark.integration

DDL = """
CREATE TABLE public.accounts (id bigint PRIMARY KEY, email text, updated_by bigint);
CREATE TABLE public.notes (id serial PRIMARY KEY, account_id bigint, body text);
"""
TABLES = [
    {
        "name": "public.accounts",
        "entity_type": "account",
        "category": "account_management",
        "actor_columns": ["updated_by"],
        "severity": {"delete": "error"},
    },
    {"name": "public.notes", "category": "content"},
]


@pytest.fixture
def settings(pg: PgDatabase) -> Settings:
    return setup_and_settings(pg, DDL, TABLES)


# -- writing records as the sink does, at chosen times -------------------------------------


class _Lsns:
    """Commit LSNs of made-up transactions. Each test starts just below 0/10000000, so that
    from the third transaction on, text order and LSN order disagree ('0/FFFFFE0' sorts after
    '0/10000000' as text): a query that compares LSNs as text fails."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._numbers = itertools.count(0xFFF_FFC0, 0x20)

    def __next__(self) -> int:
        return next(self._numbers)


_lsn = _Lsns()


@pytest.fixture(autouse=True)
def _fresh_lsns() -> None:
    _lsn.reset()


def synthetic(
    occurred_at: datetime, count: int = 1, *, table: str = "accounts", **fields: Any
) -> list[ActivityRecord]:
    """``count`` records of one made-up source transaction committed at ``occurred_at``."""
    lsn = next(_lsn)
    base: dict[str, Any] = {
        "occurred_at": occurred_at.isoformat(),
        "source": "database",
        "operation": "insert",
        "action": "account.insert",
        "category": "account_management",
        "severity": "info",
        "schema_name": "public",
        "table_name": table,
        "entity_type": "account",
        "entity_id": "1",
        "actor_id": None,
        "context": None,
        "old": None,
        "new": '{"id": 1}',
        "changes": None,
        "summary": "account 1 created",
        "xid": 1,
        "commit_lsn": f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}",
        "seq": 0,
    }
    return [ActivityRecord(**{**base, **fields, "seq": seq}) for seq in range(count)]


def checkpoint_of(records: list[ActivityRecord]) -> Checkpoint:
    last = records[-1]
    high, low = last.commit_lsn.split("/")
    lsn = (int(high, 16) << 32) | int(low, 16)
    return Checkpoint(lsn, lsn + 8, datetime.fromisoformat(last.occurred_at))


def open_sink(pg: PgDatabase, settings: Settings) -> Sink:
    sink = Sink(
        pg.dsn,
        schema=settings.sink.schema_name,
        table=settings.sink.table_name,
        slot=settings.source.slot,
    )
    sink.open()
    return sink


def write(pg: PgDatabase, settings: Settings, *transactions: list[ActivityRecord]) -> None:
    """Each transaction in its own sink transaction, through Sink.write (COPY and rollups)."""
    sink = open_sink(pg, settings)
    try:
        for records in transactions:
            sink.write(Flush(records, checkpoint_of(records)))
    finally:
        sink.close()


def partition_of(pg: PgDatabase, commit_lsn: str) -> str:
    rows = pg.execute(
        "SELECT tableoid::regclass::text FROM activity.records WHERE commit_lsn = %s::pg_lsn",
        (commit_lsn,),
    )
    assert len({row[0] for row in rows}) == 1
    return str(rows[0][0])


def month_start(moment: datetime, months: int = 0) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def db_now(pg: PgDatabase) -> datetime:
    moment: datetime = pg.execute("SELECT now()")[0][0]
    return moment.astimezone(UTC)


# -- partitions ----------------------------------------------------------------------------


def test_setup_creates_a_default_partition_and_the_current_month_with_three_ahead(
    pg: PgDatabase, settings: Settings
) -> None:
    now = db_now(pg)
    rows = pg.execute("SELECT partition_name, from_at, to_at FROM activity.record_partitions()")
    assert rows[0] == ("records_default", None, None)
    assert [(name, start, end) for name, start, end in rows[1:]] == [
        (f"records_{month_start(now, i):%Y_%m}", month_start(now, i), month_start(now, i + 1))
        for i in range(4)
    ]


def test_a_record_dated_before_every_partition_is_kept_by_the_default_partition(
    pg: PgDatabase, settings: Settings
) -> None:
    old = synthetic(datetime(2019, 3, 1, 12, tzinfo=UTC))
    write(pg, settings, old)
    assert partition_of(pg, old[0].commit_lsn) == "activity.records_default"


def test_creating_a_month_moves_its_records_out_of_the_default_partition(
    pg: PgDatabase, settings: Settings
) -> None:
    now = db_now(pg)
    later = synthetic(month_start(now, 5) + timedelta(days=2), 3)  # no partition yet
    stray = synthetic(datetime(2019, 3, 1, tzinfo=UTC))
    write(pg, settings, later, stray)
    assert partition_of(pg, later[0].commit_lsn) == "activity.records_default"

    created = pg.execute("SELECT * FROM activity.ensure_partitions(6)")
    assert [row[0] for row in created] == [
        f"activity.records_{month_start(now, 4):%Y_%m}",
        f"activity.records_{month_start(now, 5):%Y_%m}",
        f"activity.records_{month_start(now, 6):%Y_%m}",
    ]
    assert partition_of(pg, later[0].commit_lsn) == f"activity.records_{month_start(now, 5):%Y_%m}"
    assert partition_of(pg, stray[0].commit_lsn) == "activity.records_default"
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 4
    # the new default partition is guarded like the old one
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        pg.execute("TRUNCATE activity.records_default")


def test_partitions_exports_then_drops_the_months_past_the_retention(
    pg: PgDatabase, settings: Settings, tmp_path: Path
) -> None:
    for month in (1, 2, 3):
        start = datetime(2020, month, 1, tzinfo=UTC)
        pg.execute(
            "SELECT activity.create_record_partition(%s, %s, %s)",
            (f"records_2020_{month:02d}", start, month_start(start, 1)),
        )
    jan = synthetic(datetime(2020, 1, 15, tzinfo=UTC), 3, summary='a, "quoted"\nline')
    feb = synthetic(datetime(2020, 2, 15, tzinfo=UTC), 2)
    recent = synthetic(db_now(pg))
    write(pg, settings, jan, feb, recent)
    plan = plan_maintenance(settings, ahead=3, retention_months=12)
    assert [p.name for p in plan.remove] == [
        "records_2020_01",
        "records_2020_02",
        "records_2020_03",
    ]
    assert plan.create == []

    done = list(apply_maintenance(settings, plan, export_dir=tmp_path))

    assert (
        f"exported 3 records of activity.records_2020_01 to {tmp_path}/activity.records_2020_01.csv"
        in done
    )
    assert "dropped activity.records_2020_02" in done
    names = {
        row[0] for row in pg.execute("SELECT partition_name FROM activity.record_partitions()")
    }
    assert not {"records_2020_01", "records_2020_02", "records_2020_03"} & names
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 1
    with psycopg.connect(pg.dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE back (LIKE activity.records)")
        with (
            (tmp_path / "activity.records_2020_01.csv").open("rb") as src,
            cur.copy("COPY back FROM STDIN WITH (FORMAT csv, HEADER true)") as copy,
        ):
            copy.write(src.read())
        back = cur.execute("SELECT summary, seq FROM back ORDER BY seq").fetchall()
    assert back == [('a, "quoted"\nline', 0), ('a, "quoted"\nline', 1), ('a, "quoted"\nline', 2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "activity.records_2020_01.csv",
        "activity.records_2020_02.csv",
        "activity.records_2020_03.csv",
    ]


def test_the_dry_run_plan_changes_nothing_and_names_what_it_would_do(
    pg: PgDatabase, settings: Settings
) -> None:
    pg.execute(
        "SELECT activity.create_record_partition('records_2020_01', '2020-01-01Z', '2020-02-01Z')"
    )
    before = pg.execute("SELECT * FROM activity.record_partitions()")
    plan = plan_maintenance(settings, ahead=5, retention_months=1)
    now = db_now(pg)
    assert plan.describe() == [
        f"create partition activity.records_{month_start(now, 4):%Y_%m}",
        f"create partition activity.records_{month_start(now, 5):%Y_%m}",
        "detach and drop activity.records_2020_01 (2020-01, before "
        f"{month_start(now, -1):%Y-%m-%d})",
    ]
    assert pg.execute("SELECT * FROM activity.record_partitions()") == before


def test_a_partition_detached_by_an_interrupted_run_is_exported_and_dropped_by_the_next(
    pg: PgDatabase, settings: Settings, tmp_path: Path
) -> None:
    pg.execute(
        "SELECT activity.create_record_partition('records_2020_01', '2020-01-01Z', '2020-02-01Z')"
    )
    write(pg, settings, synthetic(datetime(2020, 1, 2, tzinfo=UTC), 2))
    # what the run did before it died: step 1 of the removal
    pg.execute("ALTER TABLE activity.records DETACH PARTITION activity.records_2020_01")
    pg.execute(sql.SQL("COMMENT ON TABLE activity.records_2020_01 IS {}").format(DETACHED_MARK))

    plan = plan_maintenance(settings, ahead=3, retention_months=None)
    assert [p.name for p in plan.leftovers] == ["records_2020_01"]
    done = list(apply_maintenance(settings, plan, export_dir=tmp_path))

    export = tmp_path / "activity.records_2020_01.csv"
    assert done[:2] == [
        f"exported 2 records of activity.records_2020_01 to {export}",
        "dropped activity.records_2020_01",
    ]
    assert pg.execute("SELECT to_regclass('activity.records_2020_01')") == [(None,)]


def test_retention_also_prunes_the_rollups_of_the_removed_months(
    pg: PgDatabase, settings: Settings
) -> None:
    pg.execute(
        "SELECT activity.create_record_partition('records_2020_01', '2020-01-01Z', '2020-02-01Z')"
    )
    write(pg, settings, synthetic(datetime(2020, 1, 2, tzinfo=UTC), 2), synthetic(db_now(pg)))
    plan = plan_maintenance(settings, ahead=3, retention_months=6)
    done = list(apply_maintenance(settings, plan))
    assert any(line.startswith("deleted 1 per-hour rollup rows") for line in done)
    assert any(line.startswith("deleted 1 per-minute rollup rows") for line in done)
    assert pg.execute("SELECT sum(n) FROM activity.activity_per_hour") == [(1,)]


# -- append-only ---------------------------------------------------------------------------


@pytest.fixture
def app_role(pg: PgDatabase) -> Iterator[str]:
    role = f"app_{pg.name[-10:]}"
    pg.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        yield role
    finally:
        pg.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        pg.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_role_with_select_and_insert_cannot_update_delete_or_truncate_records(
    pg: PgDatabase, settings: Settings, app_role: str
) -> None:
    write(pg, settings, synthetic(db_now(pg), 2))
    role = sql.Identifier(app_role)
    pg.execute(sql.SQL("GRANT USAGE ON SCHEMA activity TO {}").format(role))
    pg.execute(sql.SQL("GRANT SELECT, INSERT ON activity.records TO {}").format(role))
    with psycopg.connect(pg.server.dsn_for(pg.name, user=app_role), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM activity.records").fetchone() == (2,)
        for statement in (
            "UPDATE activity.records SET summary = 'forged'",
            "DELETE FROM activity.records",
            "TRUNCATE activity.records",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    assert pg.execute("SELECT count(*) FROM activity.records WHERE summary = 'forged'") == [(0,)]


def test_the_triggers_refuse_changes_even_to_a_role_granted_them_and_on_partitions(
    pg: PgDatabase, settings: Settings, app_role: str
) -> None:
    write(pg, settings, synthetic(db_now(pg)))
    role = sql.Identifier(app_role)
    pg.execute(sql.SQL("GRANT USAGE ON SCHEMA activity TO {}").format(role))
    pg.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA activity TO {}").format(role))
    partition = partition_of(pg, pg.execute("SELECT commit_lsn::text FROM activity.records")[0][0])
    with psycopg.connect(pg.server.dsn_for(pg.name, user=app_role), autocommit=True) as conn:
        for statement in (
            "UPDATE activity.records SET summary = 'forged'",
            "DELETE FROM activity.records",
            "TRUNCATE activity.records",
            f"UPDATE {partition} SET summary = 'forged'",
            f"DELETE FROM {partition}",
            f"TRUNCATE {partition}",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
    assert pg.execute("SELECT count(*) FROM activity.records") == [(1,)]


# -- rollups -------------------------------------------------------------------------------

COUNTED = """
SELECT {bucket}, source, category, severity, coalesce(schema_name, ''),
       coalesce(table_name, ''), operation, count(*)
  FROM activity.records GROUP BY 1, 2, 3, 4, 5, 6, 7
"""
STORED = """
SELECT bucket, source, category, severity, schema_name, table_name, operation, n
  FROM activity.{rollup}
"""


def assert_rollups_count_the_records(pg: PgDatabase) -> None:
    """Each rollup holds exactly COUNT(*) ... GROUP BY its bucket and dimensions, both ways."""
    for grain, rollup in (("minute", "activity_per_minute"), ("hour", "activity_per_hour")):
        counted = COUNTED.format(bucket=f"date_trunc('{grain}', occurred_at, 'UTC')")
        stored = STORED.format(rollup=rollup)
        missing = pg.execute(f"{counted} EXCEPT ALL {stored}")
        assert missing == [], f"{rollup} lacks {missing}"
        extra = pg.execute(f"{stored} EXCEPT ALL {counted}")
        assert extra == [], f"{rollup} has extra {extra}"
    by_day = pg.execute(
        "SELECT (occurred_at AT TIME ZONE 'UTC')::date, category, severity, operation, count(*) "
        "FROM activity.records GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    )
    assert by_day == pg.execute(
        "SELECT day, category, severity, operation, sum(n)::bigint FROM activity.daily_activity "
        "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    )


def test_rollups_equal_counting_the_records_after_drains_with_a_chunked_transaction(
    pg: PgDatabase, settings: Settings
) -> None:
    with pg.connect() as conn:
        conn.execute("INSERT INTO accounts SELECT g, 'a' || g, g % 7 FROM generate_series(1, 40) g")
        conn.execute(
            "INSERT INTO notes (account_id, body) SELECT g, 'n' FROM generate_series(1, 9) g"
        )
        conn.execute("UPDATE accounts SET email = 'x' WHERE id <= 10")
        conn.execute("DELETE FROM notes WHERE id <= 3")
        with conn.transaction():  # 1,700 records, batches of 500: flushed in chunks
            conn.execute("INSERT INTO accounts SELECT g, 'b', 1 FROM generate_series(100, 1299) g")
            conn.execute(
                "INSERT INTO notes (account_id, body) SELECT g, 'm' FROM generate_series(1, 500) g"
            )
    first = drain(settings)
    assert first.records == 40 + 9 + 10 + 3 + 1700
    assert_rollups_count_the_records(pg)

    with pg.connect() as conn:  # after a restart: a new daemon from the checkpoint
        conn.execute("DELETE FROM accounts WHERE id > 1200")
        conn.execute("TRUNCATE notes")
    second = drain(settings)
    assert second.records == 99 + 1
    assert drain(settings).records == 0  # nothing recounted
    assert_rollups_count_the_records(pg)
    assert pg.execute("SELECT sum(n) FROM activity.activity_per_hour") == [(1862,)]


def test_the_counts_of_chunks_roll_back_with_their_unfinished_transaction(
    pg: PgDatabase, settings: Settings
) -> None:
    now = db_now(pg)
    sink = open_sink(pg, settings)
    try:
        chunk = synthetic(now, 10)
        sink.write(Flush(chunk[:5], None))  # chunks of a large transaction, no commit yet
        sink.write(Flush(chunk[5:], None))
    finally:
        sink.close()  # the process died: the open sink transaction rolls back
    assert pg.execute("SELECT count(*) FROM activity.activity_per_minute") == [(0,)]

    committed = synthetic(now, 3)
    write(pg, settings, committed)
    with pytest.raises(SinkError):  # a duplicate (commit_lsn, seq): the flush fails whole
        write(pg, settings, committed[1:] + synthetic(now, 4))
    assert pg.execute("SELECT sum(n) FROM activity.activity_per_minute") == [(3,)]
    assert_rollups_count_the_records(pg)


# -- following -----------------------------------------------------------------------------


def test_follow_returns_each_new_record_once_in_commit_order_and_only_matching_ones(
    pg: PgDatabase, settings: Settings
) -> None:
    now = db_now(pg)
    write(pg, settings, synthetic(now - timedelta(minutes=5), 3), synthetic(now, 2, table="notes"))
    with open_store(settings) as store:
        follower = store.follow(RecordFilter(table_name="accounts"))
        initial = follower.start(limit=2)
        assert [r.seq for r in initial] == [1, 2]  # the newest two, oldest first
        assert follower.poll() == []

        # a commit time may lag behind the previous commit's: still found
        first = synthetic(now - timedelta(seconds=30), 2)
        second = synthetic(now + timedelta(seconds=1), 1, table="notes")
        third = synthetic(now + timedelta(seconds=2), 1)
        write(pg, settings, first, second, third)
        polled = follower.poll()
        assert [(r.commit_lsn, r.seq) for r in polled] == [
            (r.commit_lsn, r.seq) for r in first + third
        ]
        assert follower.poll() == []


# -- the hot queries use their indexes -----------------------------------------------------

# 50,000 records in the current month's partition: 10 common categories and a rare one,
# severities from common (info) to rare (critical), 5,000 entities, 500 actors.
BIG = """
INSERT INTO activity.records (occurred_at, source, operation, action, category, severity,
    schema_name, table_name, entity_type, entity_id, actor_id, new, summary, commit_lsn, seq)
SELECT lo + (hi - lo) * (g / 50001.0),
       'database',
       (ARRAY['insert', 'update', 'delete'])[1 + g % 3],
       'x.' || g % 3,
       CASE WHEN g % 500 = 7 THEN 'category_rare' ELSE 'category_' || g % 10 END,
       CASE WHEN g % 1000 = 0 THEN 'critical' WHEN g % 50 = 0 THEN 'error' ELSE 'info' END,
       'public', 'table_' || g % 18,
       'type_' || g % 10, (g % 5000)::text, CASE WHEN g % 4 = 0 THEN NULL ELSE (g % 500)::text END,
       jsonb_build_object('id', g, 'email', 'user' || g || '@example.com'),
       'type_' || g % 10 || ' ' || g % 5000 || ' updated: word' || g % 700,
       ('0/' || to_hex(16 * g))::pg_lsn, 0
  FROM generate_series(1, 50000) g,
       (SELECT date_trunc('month', now(), 'UTC') AS lo, now() AS hi) bounds
"""


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def test_each_hot_query_uses_its_index_and_never_scans_the_big_partition(
    pg: PgDatabase, settings: Settings
) -> None:
    pg.execute(BIG)
    pg.execute("ANALYZE activity.records")
    now = db_now(pg)
    big = f"records_{now:%Y_%m}"
    parent_index = dict(  # partition index -> the index of the parent it belongs to
        pg.execute(
            "SELECT c.relname, p.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relkind = 'I'"
        )
    )
    table = sql.Identifier("activity", "records")

    def page(**fields: Any) -> tuple[sql.Composed, list[Any]]:
        before = fields.pop("before", None)
        return queries.page_query(
            table, "activity", RecordFilter(**fields), before=before, limit=50
        )

    recent, entity = "records_occurred_at_idx", "records_entity_idx"
    category, severity = (
        "records_category_severity_occurred_at_idx",
        "records_severity_occurred_at_idx",
    )
    search, pkey = "records_summary_vector_idx", "records_pkey"
    an_hour_ago = now - timedelta(hours=1)
    cases: list[tuple[set[str], tuple[sql.Composed, list[Any]]]] = [
        ({recent}, page()),
        ({recent}, page(before=RecordCursor(now - timedelta(minutes=1), "FFFF/0", 0))),
        ({recent}, page(since=an_hour_ago)),
        ({entity}, page(entity_type="type_3", entity_id="4243")),
        (
            {entity},
            queries.history_query(
                table, entity_type="type_3", entity_id="4243", schema_name="public",
                table_name="table_1",
            ),
        ),
        ({"records_actor_id_occurred_at_idx"}, page(actor_id="77")),
        ({category}, page(category="category_rare")),
        ({category}, page(category="category_3", severities=("critical",))),
        ({severity}, page(severities=("critical",))),
        # a common value: newest first through the time index, stopping after 50 matches
        ({recent, category}, page(category="category_3")),
        ({recent, severity}, page(severities=("error", "critical"))),
        ({search}, page(search="word42")),
        ({search}, page(search='"type_2 4242"')),
        (
            {pkey},
            queries.follow_query(
                table, "activity", RecordFilter(), floor=an_hour_ago, after=("0/C3500", 0),
                through=("0/C3600", 0), limit=1000,
            ),
        ),
        # where --follow stands: the newest of the last hour (few rows here: through its times)
        ({pkey, recent}, (queries.head_query(table), [an_hour_ago])),
    ]  # fmt: skip
    with pg.connect() as conn:
        for expected, (query, params) in cases:
            row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + query, params).fetchone()
            assert row is not None
            plan = row[0][0]["Plan"]
            nodes = list(plan_nodes(plan))
            used = {parent_index.get(n["Index Name"]) for n in nodes if "Index Name" in n}
            seq_scans = [n for n in nodes if n["Node Type"] == "Seq Scan"]
            shown = f"{query.as_string(conn)}: {json.dumps(plan)[:1500]}"
            assert used & expected, f"none of {expected} used by {shown}"
            assert not [n for n in seq_scans if n.get("Relation Name") == big], shown


# -- full-text search: the summary by default, the values when asked for --------------------


def test_search_finds_entity_actor_and_action_in_the_summary_and_values_only_when_opted_in(
    pg: PgDatabase, settings: Settings
) -> None:
    pg.execute("INSERT INTO public.accounts VALUES (1, 'ada@example.com', 17), (2, 'bo@x.org', 5)")
    drain(settings)
    values_index = "activity.records_search_vector_idx"

    def found(store: Store, search: str) -> list[str | None]:
        return [r.entity_id for r in store.records(RecordFilter(search=search))]

    with open_store(settings) as store:
        assert not store.search_values
        assert values_search_indexes(store.conn, "activity", "records") == []
        # the summary names the entity, the actor and the action ("account 1 created by 17
        # (account.insert)")
        assert found(store, '"account 1"') == ["1"]
        assert found(store, "17") == ["1"]
        assert found(store, "account.insert") == ["2", "1"]
        assert found(store, "ada@example.com") == [], "values are not searched by default"

    opted_in = settings.model_copy(
        update={"store": settings.store.model_copy(update={"search_values": True})}
    )
    report = setup(opted_in)
    assert f"created the full-text index over the values of {settings.sink.table}" in report.actions
    assert not [a for a in setup(opted_in).actions if "full-text" in a], "idempotent"
    with open_store(opted_in) as store:
        assert values_search_indexes(store.conn, "activity", "records") == [values_index]
        assert store.search_values
        assert found(store, "ada@example.com") == ["1"]
        assert found(store, "17") == ["1"]
        query, params = queries.page_query(
            store.table, "activity", RecordFilter(search="x"), before=None, limit=50,
            search_values=True,
        )  # fmt: skip
        store.conn.execute("SET enable_seqscan = off")  # a few rows: show the index it can use
        plan = json.dumps(store.fetch(sql.SQL("EXPLAIN (FORMAT JSON) ") + query, params))
        assert "_search_vector_idx" in plan, plan  # the partitions' copies of the index

    report = setup(settings)  # opted out again: the expensive index goes
    assert f"dropped the full-text index over the values {values_index}" in report.actions
    with open_store(settings) as store:
        assert values_search_indexes(store.conn, "activity", "records") == []
        assert not store.search_values
        assert found(store, "17") == ["1"]


def test_several_severities_are_one_ordered_scan_each_never_a_full_sort_or_a_long_filter(
    pg: PgDatabase, settings: Settings
) -> None:
    # In BIG, errors and criticals all fall in category_0 (g % 50 = 0 implies g % 10 = 0), as
    # in real stores, where a category's rules fix its severities: category_3 has none, though
    # the planner, taking the columns as independent, would expect some. `severity = ANY(...)`
    # gave a Sort of every match or a walk down the time index filtering out the whole month;
    # one ordered scan per severity, with the (category, severity) statistics of 0012, reads
    # only the page.
    pg.execute(BIG)
    pg.execute("ANALYZE activity.records")
    now = db_now(pg)
    big = f"records_{now:%Y_%m}"
    table = sql.Identifier("activity", "records")
    # what lets the planner see that category_3 has no errors: (category, severity) statistics
    # on every partition (migration 0012), present and future
    pg.execute("SELECT activity.ensure_partitions(5)")
    without = pg.execute(
        "SELECT p.partition_name FROM activity.record_partitions() p WHERE NOT EXISTS ("
        " SELECT 1 FROM pg_statistic_ext s WHERE s.stxrelid = format('%I.%I',"
        " p.partition_schema, p.partition_name)::regclass AND 'm' = ANY(s.stxkind))"
    )
    assert without == [], without

    def page(**fields: Any) -> tuple[sql.Composed, list[Any]]:
        before = fields.pop("before", None)
        return queries.page_query(
            table, "activity", RecordFilter(**fields), before=before, limit=50
        )

    def relations(node: dict[str, Any]) -> set[str]:
        return {n["Relation Name"] for n in plan_nodes(node) if "Relation Name" in n}

    an_hour_ago = RecordCursor(now - timedelta(hours=1), "FFFF/0", 0)
    cases = {
        "a category without these severities": page(
            category="category_3", severities=("error", "critical")
        ),
        "a category with them": page(category="category_0", severities=("error", "critical")),
        "a later page": page(
            category="category_0", severities=("info", "error"), before=an_hour_ago
        ),
        "severities alone": page(severities=("warning", "error", "critical")),
        "a later page of severities alone": page(
            severities=("warning", "error", "critical"), before=an_hour_ago
        ),
    }
    with pg.connect() as conn:
        for name, (query, params) in cases.items():
            explain = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + query
            row = conn.execute(explain, params).fetchone()
            assert row is not None
            plan = row[0][0]["Plan"]
            shown = f"{name}: {query.as_string(conn)}: {json.dumps(plan)[:3000]}"
            nodes = list(plan_nodes(plan))
            # A Sort of the month's matches: harmless for a handful (the planner sorts the
            # few records of a rare pair), seconds for a common one. Only a handful passes.
            full_sorts = [
                n
                for n in nodes
                if n["Node Type"] == "Sort"
                and big in relations(n)
                and max(n["Plan Rows"], n["Actual Rows"]) > 50
            ]
            assert not full_sorts, f"a full Sort of the month: {shown}"
            read = sum(
                (n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0))
                * n.get("Actual Loops", 1)
                for n in nodes
                if n.get("Relation Name") == big
            )
            # a common pair may be found walking the time index (a few hundred rows); a pair
            # the month lacks must not walk the whole month (50,000); `= ANY` read 2,500
            assert read <= 1000, f"read {read} rows of the month for one page: {shown}"

        # the same records, in the same order, as the plain definition of the filter
        plain = (
            "SELECT commit_lsn::text, seq FROM activity.records WHERE severity = ANY(%s) {} "
            "ORDER BY occurred_at DESC, commit_lsn DESC, seq DESC LIMIT 50"
        )
        lsn, seq = STORED_COLUMNS.index("commit_lsn"), STORED_COLUMNS.index("seq")
        for category, severities, before in [
            ("category_0", ("error", "critical"), None),
            ("category_0", ("info", "error", "critical"), None),
            ("category_0", ("info", "error", "critical"), an_hour_ago),
            (None, ("error", "critical", "warning"), None),
        ]:
            query, params = page(category=category, severities=severities, before=before)
            got = [(row[lsn], row[seq]) for row in conn.execute(query, params)]
            extra, extra_params = "", []
            if category is not None:
                extra, extra_params = "AND category = %s", [category]
            if before is not None:
                extra += " AND (occurred_at, commit_lsn, seq) < (%s, %s::pg_lsn, %s)"
                extra_params += [before.occurred_at, before.commit_lsn, before.seq]
            expected = conn.execute(
                plain.format(extra).encode(), [list(severities), *extra_params]
            ).fetchall()
            assert len(got) == 50 and got == [tuple(r) for r in expected]
