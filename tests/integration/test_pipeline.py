"""The capture pipeline end to end on a real PostgreSQL: what committed is recorded, once."""

from __future__ import annotations

import psycopg
import pytest

from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, records, setup_and_settings

pytestmark = [pytest.mark.integration, pytest.mark.every_server]

ACCOUNTS = """
CREATE TABLE public.accounts (
    id bigint PRIMARY KEY,
    email text NOT NULL,
    balance numeric(38, 18) NOT NULL DEFAULT 0,
    active boolean NOT NULL DEFAULT true,
    profile jsonb,
    password_hash text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by bigint,
    created_by bigint
);
CREATE TABLE public.notes (id serial PRIMARY KEY, account_id bigint, body text);
"""
TABLES = [
    {
        "name": "public.accounts",
        "entity_type": "account",
        "category": "account_management",
        "actor_columns": ["updated_by", "created_by"],
        "ignore_columns": ["updated_at"],
        "severity": {"delete": "critical"},
    },
    {"name": "public.notes"},
]


@pytest.fixture
def settings(pg: PgDatabase):  # type: ignore[no-untyped-def]
    return setup_and_settings(pg, ACCOUNTS, TABLES)


def test_insert_update_delete_become_one_record_each_with_rules_applied(pg, settings):
    with pg.connect() as conn:
        conn.execute(
            "INSERT INTO accounts (id, email, balance, profile, password_hash, created_by)"
            " VALUES (1, 'a@example.com', 10.5, '{\"tier\": \"gold\"}', 'pbkdf2$x', 7)"
        )
        conn.execute("UPDATE accounts SET email = 'b@example.com', updated_by = 8 WHERE id = 1")
        conn.execute("DELETE FROM accounts WHERE id = 1")
    stats = drain(settings)
    rows = records(pg)
    assert [r["operation"] for r in rows] == ["insert", "update", "delete"]
    assert stats.records == 3
    insert, update, delete = rows
    assert insert["entity_id"] == "1" and insert["entity_type"] == "account"
    assert insert["actor_id"] == "7"  # created_by: updated_by is null
    assert insert["new"]["profile"] == {"tier": "gold"}
    assert insert["new"]["password_hash"] == "[redacted]"
    assert insert["category"] == "account_management" and insert["action"] == "account.insert"
    assert update["actor_id"] == "8"
    assert update["changes"] == {
        "email": {"old": "a@example.com", "new": "b@example.com"},
        "updated_by": {"old": None, "new": 8},
    }
    assert update["old"]["email"] == "a@example.com" and update["new"]["email"] == "b@example.com"
    assert update["summary"] == "account 1 updated by 8: email, updated_by (account.update)"
    assert delete["severity"] == "critical" and delete["new"] is None
    assert delete["old"]["email"] == "b@example.com"


def test_records_equal_to_jsonb_of_the_row(pg, settings):
    with pg.connect() as conn:
        conn.execute(
            "INSERT INTO accounts (id, email, balance, profile, updated_at) VALUES "
            "(2, 'x@y', 123456789012345678.123456789012345678, "
            "'{\"a\": [1, 2.50, null, true]}', '2024-02-29 13:14:15.123456+05:30')"
        )
        expected = conn.execute(
            "SELECT to_jsonb(a) - 'password_hash' FROM accounts a WHERE id = 2"
        ).fetchone()[0]
    drain(settings)
    (row,) = records(pg)
    new = dict(row["new"])
    new.pop("password_hash")
    assert new == expected


def test_multi_row_and_interleaved_transactions_are_recorded_in_commit_order(pg, settings):
    first = pg.connect(autocommit=False)
    second = pg.connect(autocommit=False)
    try:
        first.execute(
            "INSERT INTO notes (account_id, body) SELECT g, 'first' FROM generate_series(1, 5) g"
        )
        second.execute(
            "INSERT INTO notes (account_id, body) SELECT g, 'second' FROM generate_series(1, 3) g"
        )
        first.execute("INSERT INTO notes (account_id, body) VALUES (99, 'first')")
        second.commit()  # commits before `first`: its records come first
        first.commit()
    finally:
        first.close()
        second.close()
    drain(settings)
    rows = records(pg)
    bodies = [r["new"]["body"] for r in rows]
    assert bodies == ["second"] * 3 + ["first"] * 6
    assert [r["seq"] for r in rows] == [0, 1, 2, 0, 1, 2, 3, 4, 5]
    assert len({r["commit_lsn"] for r in rows}) == 2
    assert len({r["xid"] for r in rows}) == 2


def test_rolled_back_transactions_and_savepoints_leave_no_records(pg, settings):
    with pg.connect(autocommit=False) as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('rolled back')")
        conn.rollback()
        conn.execute("INSERT INTO notes (body) VALUES ('kept 1')")
        conn.execute("SAVEPOINT s1")
        conn.execute("INSERT INTO notes (body) VALUES ('undone by savepoint')")
        conn.execute("ROLLBACK TO SAVEPOINT s1")
        conn.execute("INSERT INTO notes (body) VALUES ('kept 2')")
        conn.commit()
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("INSERT INTO notes (body) VALUES ('failed')")
            conn.execute("SELECT 1 / 0")
        conn.rollback()
    drain(settings)
    assert [r["new"]["body"] for r in records(pg)] == ["kept 1", "kept 2"]


def test_alter_table_mid_stream_decodes_each_change_with_its_columns(pg, settings):
    with pg.connect() as conn:
        conn.execute("INSERT INTO notes (id, body) VALUES (1, 'before')")
        conn.execute("ALTER TABLE notes ADD COLUMN color text DEFAULT 'red'")
        conn.execute("INSERT INTO notes (id, body) VALUES (2, 'after add')")
        conn.execute("ALTER TABLE notes RENAME COLUMN body TO text_body")
        conn.execute("UPDATE notes SET color = 'blue' WHERE id = 1")
        conn.execute("ALTER TABLE notes DROP COLUMN account_id")
        conn.execute("DELETE FROM notes WHERE id = 2")
    drain(settings)
    rows = records(pg)
    assert rows[0]["new"] == {"id": 1, "account_id": None, "body": "before"}
    assert rows[1]["new"] == {"id": 2, "account_id": None, "body": "after add", "color": "red"}
    assert rows[2]["changes"] == {"color": {"old": "red", "new": "blue"}}
    assert set(rows[2]["new"]) == {"id", "account_id", "text_body", "color"}
    assert rows[3]["old"] == {"id": 2, "text_body": "after add", "color": "red"}


def test_update_that_leaves_a_toasted_column_untouched_keeps_its_full_value(pg, settings):
    big = "".join(f"{i:06d}" for i in range(100_000))  # 600 kB, incompressible enough to TOAST
    with pg.connect() as conn:
        conn.execute("INSERT INTO notes (id, body) VALUES (1, %s)", (big,))
        stored = conn.execute("SELECT pg_column_size(body) FROM notes WHERE id = 1").fetchone()
        assert stored[0] > 8000  # really out of line
        conn.execute("UPDATE notes SET account_id = 5 WHERE id = 1")
    drain(settings)
    insert, update = records(pg)
    assert insert["new"]["body"] == big
    assert update["new"]["body"] == big
    assert update["old"]["body"] == big
    assert update["changes"] == {"account_id": {"old": None, "new": 5}}
    assert update["context"] is None  # nothing unavailable


def test_update_of_only_ignored_columns_makes_no_record(pg, settings):
    with pg.connect() as conn:
        conn.execute("INSERT INTO accounts (id, email) VALUES (3, 'c@x')")
        conn.execute("UPDATE accounts SET updated_at = now() + interval '1 day' WHERE id = 3")
    drain(settings)
    assert [r["operation"] for r in records(pg)] == ["insert"]


def test_truncate_becomes_one_record_per_table(pg, settings):
    with pg.connect() as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('x')")
        conn.execute("TRUNCATE notes, accounts RESTART IDENTITY")
    drain(settings)
    rows = records(pg)
    truncates = sorted(r["table_name"] for r in rows if r["operation"] == "truncate")
    assert truncates == ["accounts", "notes"]
    assert all(
        r["context"] == {"restart_identity": True} for r in rows if r["operation"] == "truncate"
    )


def test_restart_skips_what_was_recorded_and_records_what_came_after(pg, settings):
    with pg.connect() as conn:
        conn.execute("INSERT INTO notes (body) SELECT 'a' || g FROM generate_series(1, 50) g")
    assert drain(settings).records == 50
    assert drain(settings).records == 0
    with pg.connect() as conn:
        conn.execute("UPDATE notes SET body = body || '!' WHERE id <= 10")
    assert drain(settings).records == 10
    rows = records(pg)
    assert len(rows) == 60
    assert len({(r["commit_lsn"], r["seq"]) for r in rows}) == 60


def test_checkpoint_ahead_of_the_slot_skips_transactions_already_recorded(pg, settings):
    """A crash after the sink commit but before the acknowledgement: the slot re-sends
    transactions the checkpoint already covers; they must not be recorded twice."""
    behind = f"{pg.slot}_behind"
    pg.execute("SELECT pg_copy_logical_replication_slot(%s, %s)", (pg.slot, behind))
    with pg.connect() as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('one')")
        conn.execute("INSERT INTO notes (body) VALUES ('two')")
    assert drain(settings).records == 2
    # Put the slot back where it was before those two transactions were acknowledged.
    pg.execute("SELECT pg_drop_replication_slot(%s)", (pg.slot,))
    pg.execute("SELECT pg_copy_logical_replication_slot(%s, %s)", (behind, pg.slot))
    pg.execute("SELECT pg_drop_replication_slot(%s)", (behind,))
    (confirmed, checkpoint) = pg.execute(
        "SELECT s.confirmed_flush_lsn, c.end_lsn FROM pg_replication_slots s, "
        "activity.checkpoints c WHERE s.slot_name = %s",
        (pg.slot,),
    )[0]
    assert confirmed < checkpoint  # the slot really is behind the checkpoint
    with pg.connect() as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('three')")
    stats = drain(settings)
    assert stats.records == 1
    assert [r["new"]["body"] for r in records(pg)] == ["one", "two", "three"]


def test_large_transaction_is_written_in_chunks_inside_one_sink_transaction(pg):
    settings = setup_and_settings(
        pg,
        "CREATE TABLE t (id int PRIMARY KEY, v text)",
        [{"name": "public.t"}],
        batch={"max_rows": 100},
    )
    with pg.connect() as conn:
        conn.execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 2500) g")
        conn.execute("INSERT INTO t VALUES (0, 'small')")
    stats = drain(settings)
    assert stats.records == 2501
    assert stats.flushes >= 25  # chunks of 100 rows
    (count, distinct_txn) = pg.execute(
        "SELECT count(*), count(DISTINCT commit_lsn) FROM activity.records"
    )[0]
    assert (count, distinct_txn) == (2501, 2)


def test_a_change_the_sink_refuses_stops_the_daemon_naming_it_and_loses_nothing(pg, settings):
    """A statement failure in the sink (here a constraint): the batch is not half-written, the
    error names the offending change, nothing is acknowledged, and after the fix every change
    is recorded exactly once."""
    from cdc.errors import SinkError

    pg.execute("ALTER TABLE activity.records ADD CONSTRAINT no_poison CHECK (entity_id <> '666')")
    with pg.connect() as conn:
        conn.execute("INSERT INTO notes (id, body) VALUES (1, 'fine'), (2, 'fine')")
        conn.execute("INSERT INTO notes (id, body) VALUES (666, 'poison')")
        conn.execute("INSERT INTO notes (id, body) VALUES (3, 'after')")
    (confirmed_before,) = pg.execute(
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = %s", (pg.slot,)
    )[0]
    with pytest.raises(SinkError) as failure:
        drain(settings)
    assert "public.notes key 666 (insert" in str(failure.value)
    assert "no_poison" in str(failure.value)
    (count,) = pg.execute("SELECT count(*) FROM activity.records")[0]
    (confirmed_after,) = pg.execute(
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = %s", (pg.slot,)
    )[0]
    # Whatever was written before the bad batch is acknowledged; the bad batch is not.
    assert count < 4
    pg.execute("ALTER TABLE activity.records DROP CONSTRAINT no_poison")
    drain(settings)
    ids = [r["entity_id"] for r in records(pg)]
    assert ids == ["1", "2", "666", "3"]
    assert confirmed_after >= confirmed_before
