"""The records' hash chain (tamper evidence) on a real PostgreSQL: the daemon chains what it
writes, across batches and sink transactions; ``cdc verify-chain`` recomputes it in Python from
the stored values and names the first record changed, deleted or inserted out of band; hostile
values hash the same on both sides (hypothesis)."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cdc.cli.main import main
from cdc.config import Settings
from cdc.pipeline.batching import Flush
from cdc.pipeline.sink import Sink
from cdc.pipeline.values import jsonb_text
from cdc.store.chain import GENESIS, ChainReport, verify_chain
from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, setup_and_settings
from tests.integration.test_store import (
    _fresh_lsns,  # noqa: F401  (the autouse fixture of made-up LSNs)
    checkpoint_of,
    db_now,
    synthetic,
)

pytestmark = pytest.mark.integration

DDL = "CREATE TABLE public.accounts (id bigint PRIMARY KEY, email text, balance numeric);"
TABLES = [{"name": "public.accounts", "entity_type": "account", "category": "account"}]


@pytest.fixture
def chained(pg: PgDatabase) -> Settings:
    """40 changes in 12 source transactions, recorded by the daemon in small batches."""
    settings = setup_and_settings(pg, DDL, TABLES)
    settings = settings.model_copy(
        update={"batch": settings.batch.model_copy(update={"max_rows": 7})}
    )
    with pg.connect() as conn:
        for t in range(10):
            with conn.transaction():
                conn.execute(
                    "INSERT INTO accounts SELECT g, 'a' || g || '@x.io', g * 1.5 "
                    "FROM generate_series(%s::int, %s::int) g",
                    (t * 3 + 1, t * 3 + 3),
                )
        conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id <= 6")
        conn.execute("DELETE FROM accounts WHERE id IN (29, 30, 28, 27)")
    drain(settings)
    return settings


def check(pg: PgDatabase, settings: Settings, **kwargs: Any) -> ChainReport:
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        return verify_chain(conn, settings.sink.schema_name, settings.sink.table_name, **kwargs)


def chain_rows(pg: PgDatabase) -> list[tuple[Any, ...]]:
    return pg.execute(
        "SELECT commit_lsn::text, seq, prev_hash, hash FROM activity.records "
        "ORDER BY commit_lsn, seq"
    )


def tamper(pg: PgDatabase, statement: str, params: tuple[Any, ...] = ()) -> None:
    """As the owner would: past the append-only triggers (replica role skips them)."""
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(statement, params)


def test_the_daemon_chains_every_record_in_commit_order_and_the_chain_verifies(
    pg: PgDatabase, chained: Settings
) -> None:
    rows = chain_rows(pg)
    assert len(rows) == 30 + 6 + 4
    assert bytes(rows[0][2]) == GENESIS
    for before, after in itertools.pairwise(rows):
        assert bytes(after[2]) == bytes(before[3])  # each links to the one before
    assert len({bytes(r[3]) for r in rows}) == len(rows)
    (head,) = pg.execute("SELECT hash FROM activity.records_chain_head")[0]
    assert bytes(head) == bytes(rows[-1][3])
    report = check(pg, chained)
    assert report.problem is None, report.problem
    assert report.checked == 40 and report.starts_at_genesis and report.unchained == 0
    assert report.head == bytes(rows[-1][3])


def _nth(pg: PgDatabase, n: int) -> tuple[str, int]:
    lsn, seq = chain_rows(pg)[n][:2]
    return lsn, seq


KEY = "commit_lsn = %s::pg_lsn AND seq = %s"


def test_a_changed_value_is_named(pg: PgDatabase, chained: Settings) -> None:
    lsn, seq = _nth(pg, 17)
    tamper(
        pg,
        f"UPDATE activity.records SET new = new::jsonb || '{{\"balance\": 0}}' WHERE {KEY}",
        (lsn, seq),
    )
    report = check(pg, chained)
    assert report.kind == "changed"
    assert report.culprit is not None and (report.culprit.commit_lsn, report.culprit.seq) == (
        lsn,
        seq,
    )
    assert f"commit {lsn} seq {seq}" in (report.problem or "")
    assert report.checked == 18  # it stops at the first tampered record


def test_a_changed_time_or_a_changed_and_rehashed_record_is_caught(
    pg: PgDatabase, chained: Settings
) -> None:
    lsn, seq = _nth(pg, 5)
    tamper(
        pg,
        f"UPDATE activity.records SET occurred_at = occurred_at + interval '1 microsecond' "
        f"WHERE {KEY}",
        (lsn, seq),
    )
    assert check(pg, chained).kind == "changed"
    # The forger recomputes the record's own hash with the store's functions: the next
    # record's link no longer matches.
    tamper(
        pg,
        "UPDATE activity.records SET hash = activity.chain_step(NULL, activity.chain_text("
        "occurred_at, recorded_at, source, operation, action, category, severity, schema_name,"
        " table_name, entity_type, entity_id, actor_id, context, old, new, changes, summary, "
        f"xid, commit_lsn, seq, chain_position), prev_hash) WHERE {KEY}",
        (lsn, seq),
    )
    report = check(pg, chained)
    assert report.kind == "changed", report.problem
    assert report.culprit is not None
    assert (report.culprit.commit_lsn, report.culprit.seq) == (lsn, seq)
    assert "changed and hashed again" in (report.problem or "")


def test_a_deleted_record_is_named_by_the_record_after_the_gap(
    pg: PgDatabase, chained: Settings
) -> None:
    lsn, seq = _nth(pg, 9)
    after = _nth(pg, 10)
    tamper(pg, f"DELETE FROM activity.records WHERE {KEY}", (lsn, seq))
    report = check(pg, chained)
    assert report.kind == "deleted"
    assert report.culprit is not None
    assert (report.culprit.commit_lsn, report.culprit.seq) == after
    assert "1 record(s) were deleted before" in (report.problem or "")


def test_records_deleted_from_the_end_are_caught_by_the_head(
    pg: PgDatabase, chained: Settings
) -> None:
    rows = chain_rows(pg)
    tamper(
        pg,
        "DELETE FROM activity.records WHERE (commit_lsn, seq) >= (%s::pg_lsn, %s)",
        rows[-3][:2],
    )
    report = check(pg, chained)
    assert report.kind == "truncated", report.problem
    assert f"commit {rows[-1][0]} seq {rows[-1][1]}" in (report.problem or "")
    assert "3 record(s) after" in (report.problem or "")
    tamper(pg, "DELETE FROM activity.records")
    assert check(pg, chained).kind == "truncated"


def _forge_after(pg: PgDatabase, n: int, *, with_hash: bool) -> tuple[str, int]:
    """A copy of record n, placed right after it (same commit, seq + 1000), chained to it with
    the store's own functions when ``with_hash``."""
    lsn, seq = _nth(pg, n)
    hash_sql = (
        "activity.chain_step(NULL, activity.chain_text(occurred_at, recorded_at, source, "
        "operation, action, category, severity, schema_name, table_name, entity_type, entity_id,"
        " actor_id, context, old, new, changes, 'forged', xid, commit_lsn, seq + 1000, "
        "chain_position + 1), hash)"
        if with_hash
        else "NULL"
    )
    tamper(
        pg,
        "INSERT INTO activity.records (occurred_at, recorded_at, source, operation, action, "
        "category, severity, schema_name, table_name, entity_type, entity_id, actor_id, context,"
        " old, new, changes, summary, xid, commit_lsn, seq, chain_position, prev_hash, hash) "
        "SELECT occurred_at, recorded_at, source, operation, action, category, severity, "
        "schema_name, table_name, entity_type, entity_id, actor_id, context, old, new, changes,"
        f" 'forged', xid, commit_lsn, seq + 1000, chain_position + 1, "
        f"{'hash' if with_hash else 'NULL'}, {hash_sql} "
        f"FROM activity.records WHERE {KEY}",
        (lsn, seq),
    )
    return lsn, seq + 1000


def test_a_record_inserted_out_of_band_is_named_even_with_a_valid_looking_hash(
    pg: PgDatabase, chained: Settings
) -> None:
    forged = _forge_after(pg, 12, with_hash=True)
    report = check(pg, chained)
    assert report.kind == "inserted", report.problem
    assert report.culprit is not None
    assert (report.culprit.commit_lsn, report.culprit.seq) == forged


def test_a_record_inserted_without_a_hash_is_named(pg: PgDatabase, chained: Settings) -> None:
    forged = _forge_after(pg, 3, with_hash=False)
    report = check(pg, chained)
    assert report.kind == "unhashed"
    assert report.culprit is not None
    assert (report.culprit.commit_lsn, report.culprit.seq) == forged


def test_a_record_appended_after_the_head_is_caught(pg: PgDatabase, chained: Settings) -> None:
    forged = _forge_after(pg, 39, with_hash=True)
    report = check(pg, chained)
    assert report.kind == "inserted"
    assert report.culprit is not None
    assert (report.culprit.commit_lsn, report.culprit.seq) == forged


def test_since_starts_at_a_later_record_and_trusts_its_link(
    pg: PgDatabase, chained: Settings
) -> None:
    lsn, seq = _nth(pg, 2)
    tamper(pg, f"UPDATE activity.records SET summary = 'x' WHERE {KEY}", (lsn, seq))
    assert check(pg, chained).kind == "changed"
    # Move the first records back a day, then verify the last hour only.
    rows = chain_rows(pg)
    tamper(
        pg,
        "UPDATE activity.records SET occurred_at = occurred_at - interval '1 day' "
        "WHERE (commit_lsn, seq) <= (%s::pg_lsn, %s)",
        rows[3][:2],
    )
    now = db_now(pg)
    report = check(pg, chained, since=now - timedelta(hours=1))
    assert report.problem is None, report.problem
    assert report.checked == 36 and not report.starts_at_genesis
    assert report.first is not None and (report.first.commit_lsn, report.first.seq) == rows[4][:2]


def test_cli_verify_chain_exit_codes_and_output(
    pg: PgDatabase, chained: Settings, tmp_path: Path
) -> None:
    config = tmp_path / "cdc.toml"
    config.write_text(
        f"[source]\ndsn = '{pg.dsn}'\nslot = '{pg.slot}'\npublication = '{pg.publication}'\n"
        "[[tables]]\nname = 'public.accounts'\n"
    )
    runner = CliRunner()
    ok = runner.invoke(main, ["--config", str(config), "verify-chain"])
    assert ok.exit_code == 0, ok.output
    (head,) = pg.execute("SELECT encode(hash, 'hex') FROM activity.records_chain_head")[0]
    assert "checked 40 record(s)" in ok.output and f"chain intact; head {head}" in ok.output
    lsn, seq = _nth(pg, 20)
    tamper(pg, f"UPDATE activity.records SET actor_id = 'mallory' WHERE {KEY}", (lsn, seq))
    broken = runner.invoke(main, ["--config", str(config), "verify-chain", "--json"])
    assert broken.exit_code == 9, broken.output
    body = json.loads(broken.output.splitlines()[0])
    assert body["intact"] is False and body["kind"] == "changed"
    assert body["record"]["commit_lsn"] == lsn and body["record"]["seq"] == seq
    assert f"commit {lsn} seq {seq}" in broken.output  # the one-line error too
    bad = runner.invoke(main, ["--config", str(config), "verify-chain", "--since", "yesterday"])
    assert bad.exit_code == 2


# -- hostile values: the SQL side and the Python side render them the same ---------------------

_texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)
# (PostgreSQL text, and so jsonb, holds no NUL: the daemon never sees one.)
# Numbers in the forms that jsonb rewrites: exponents, trailing zeros, negative zero, 5,000 digits.
_numbers = (
    st.sampled_from(
        ["1e5", "1E+2", "1.000", "-0", "-0.0", "0.1e-2", "1" * 5000, "-" + "9" * 4999]
    ).map(Decimal)
    | st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: abs(d.adjusted()) < 1000
    )
    | st.floats(allow_nan=False, allow_infinity=False)
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | _numbers | _texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts, inner, max_size=4),
    max_leaves=12,
)


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.lists(st.tuples(_texts, _texts, _json_values, _json_values), min_size=1, max_size=5),
        min_size=1,
        max_size=3,
    )
)
def test_hostile_values_chain_and_verify_the_same_on_both_sides(
    pg: PgDatabase, chain_store: Settings, batches: list[list[tuple[Any, ...]]]
) -> None:
    pg.execute("SET session_replication_role = replica; TRUNCATE activity.records")
    pg.execute("UPDATE activity.records_chain_head SET hash = decode(repeat('00', 32), 'hex')")
    sink = Sink(pg.dsn, schema="activity", table="records", slot=pg.slot)
    sink.open()
    try:
        now = db_now(pg)
        for batch in batches:
            records = synthetic(now, len(batch))
            records = [
                r._replace(
                    summary=summary,
                    actor_id=actor,
                    new=jsonb_text({"v": new}),
                    context=jsonb_text(context),
                )
                for r, (summary, actor, new, context) in zip(records, batch, strict=True)
            ]
            sink.write(Flush(records, checkpoint_of(records)))
    finally:
        sink.close()
    report = check(pg, chain_store)
    assert report.problem is None, report.problem
    assert report.checked == sum(len(b) for b in batches)


@pytest.fixture
def chain_store(pg: PgDatabase) -> Settings:
    return setup_and_settings(pg, DDL, TABLES)


def test_the_refused_change_is_still_named_and_nothing_of_its_batch_is_chained(
    pg: PgDatabase, chain_store: Settings
) -> None:
    from cdc.errors import SinkError

    pg.execute("ALTER TABLE activity.records ADD CONSTRAINT no_7 CHECK (entity_id <> '7')")
    sink = Sink(pg.dsn, schema="activity", table="records", slot=pg.slot)
    sink.open()
    try:
        now = db_now(pg)
        good = synthetic(now, 3)
        sink.write(Flush(good, checkpoint_of(good)))
        bad = [r._replace(entity_id=str(5 + r.seq)) for r in synthetic(now, 4)]
        with pytest.raises(SinkError) as failure:
            sink.write(Flush(bad, checkpoint_of(bad)))
    finally:
        sink.close()
    assert f"key 7 (insert, commit {bad[2].commit_lsn}, seq 2)" in str(failure.value)
    assert "no_7" in str(failure.value)
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 3
    report = check(pg, chain_store)
    assert report.problem is None and report.checked == 3


ODD_DDL = """
CREATE TYPE public.money_pair AS (amount numeric, rate float8, "label é" text, meta json);
CREATE TABLE public.odd (
    id int PRIMARY KEY, f8 float8, f4 float4, n numeric, j json, jb jsonb, fa float8[],
    ja json[], pair public.money_pair, "é" text, bb text, a text
);
ALTER TABLE public.odd REPLICA IDENTITY FULL;
"""


def test_the_daemon_hashes_the_text_jsonb_gives_back_for_hostile_columns(pg: PgDatabase) -> None:
    """Floats in exponent form, -0, json with its own spacing, key order and duplicate keys,
    composites and keys of every length: the daemon's documents are jsonb's own text, so the
    chain it computed verifies from what is stored."""
    settings = setup_and_settings(
        pg, ODD_DDL, [{"name": "public.odd", "entity_type": "odd", "category": "odd"}]
    )
    with pg.connect() as conn:
        conn.execute(
            "INSERT INTO odd VALUES (1, 1e100, '-0', 1.000, "
            """'{"b" :1e5, "a":[1.50,-0.0,"x\\u0001"], "b":2,"é":{"z":1,"aa":2}}', """
            """'{"b":1e5}', '{1e-7,-0,NaN,Infinity}', ARRAY['{"y":1, "x" :2}']::json[], """
            """ROW(1e3, 1.5e-7, 'q"\\', '[1E2 , {"k" : -0}]'), 'é', 'bb', 'a\tb\nc')"""
        )
        conn.execute("INSERT INTO odd (id, n) SELECT g, g * 0.10 FROM generate_series(2, 9) g")
        conn.execute(
            """UPDATE odd SET f8 = -1.5e-300, j = '{"z" : 0.0, "a": 1}', pair = NULL, """
            "n = repeat('9', 3000)::numeric WHERE id = 1"
        )
        conn.execute("DELETE FROM odd WHERE id = 1")
    drain(settings)
    report = check(pg, settings)
    assert report.problem is None, report.problem
    assert report.checked == 11
    # and the documents are what to_jsonb gave for the rows (fidelity holds)
    stored = pg.execute(
        "SELECT new::text FROM activity.records WHERE entity_id = '1' AND operation = 'insert'"
    )[0][0]
    assert stored.startswith('{"a": "a\\tb\\nc", "j": {"a": [1.50, 0.0, "x\\u0001"], "b": 2,')
    assert '"f4": 0,' in stored and '"f8": 1' + "0" * 100 + "," in stored


def test_flushes_prepared_ahead_are_chained_again_when_another_writer_moved_the_head(
    pg: PgDatabase, chain_store: Settings
) -> None:
    """The encoder chains flushes ahead from the head it predicts; a second writer moving the
    head meanwhile makes the write encode them again from the head it locked: one chain."""
    ours = Sink(pg.dsn, schema="activity", table="records", slot=pg.slot)
    other = Sink(pg.dsn, schema="activity", table="records", slot=pg.slot + "_other")
    ours.open()
    other.open()
    try:
        now = db_now(pg)
        theirs, first, second = synthetic(now, 4), synthetic(now, 3), synthetic(now, 2)
        ahead = [
            ours.prepare(Flush(first, None)),
            ours.prepare(Flush(second, checkpoint_of(second))),
        ]
        assert ahead[1].head == ahead[0].moved  # chained ahead, one after the other
        other.write(Flush(theirs, checkpoint_of(theirs)))
        for prepared in ahead:
            ours.write(prepared)
    finally:
        ours.close()
        other.close()
    report = check(pg, chain_store)
    assert report.problem is None, report.problem
    assert report.checked == 9
    positions = pg.execute("SELECT chain_position FROM activity.records ORDER BY chain_position")
    assert [p for (p,) in positions] == list(range(1, 10))
