"""``[sink] on_refused = "dead_letter"``: a change the sink refuses is parked explicitly, with
its error, loudly (log, metric, ``cdc check``), and the rest is recorded; with the default,
"stop", nothing is parked (tests/integration/test_pipeline.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from cdc.cli.main import main
from cdc.config import Settings
from cdc.store.chain import verify_chain
from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, setup_and_settings

pytestmark = pytest.mark.integration

DDL = "CREATE TABLE public.notes (id int PRIMARY KEY, body text);"
TABLES = [{"name": "public.notes", "entity_type": "note", "category": "content"}]


@pytest.fixture
def parking(pg: PgDatabase) -> Settings:
    settings = setup_and_settings(
        pg, DDL, TABLES, sink={"on_refused": "dead_letter"}, batch={"max_rows": 5}
    )
    pg.execute("ALTER TABLE activity.records ADD CONSTRAINT no_poison CHECK (entity_id <> '13')")
    return settings


def _ids(pg: PgDatabase) -> list[int]:
    rows = pg.execute("SELECT entity_id FROM activity.records ORDER BY commit_lsn, seq")
    return [int(r[0]) for r in rows]


def test_a_refused_change_is_parked_with_its_error_and_the_rest_is_recorded(
    pg: PgDatabase, parking: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # One source transaction of 20 rows: 4 chunks of 5 in one sink transaction; the poison is
    # in the third chunk, so the chunks before it must survive the refusal (savepoint).
    pg.execute("INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 20) g")
    pg.execute("INSERT INTO notes VALUES (21, 'after')")
    with caplog.at_level(logging.ERROR, logger="cdc.sink"):
        stats = drain(parking)
    assert _ids(pg) == [i for i in range(1, 22) if i != 13]
    parked = pg.execute(
        "SELECT schema_name, table_name, entity_id, operation, error, sqlstate, record, "
        "commit_lsn::text, seq FROM activity.dead_letters"
    )
    assert len(parked) == 1
    schema, table, key, operation, error, sqlstate, record, lsn, seq = parked[0]
    assert (schema, table, key, operation, sqlstate) == ("public", "notes", "13", "insert", "23514")
    assert "no_poison" in error
    assert json.loads(json.loads(record)["new"]) == {"id": 13, "body": "n13"}
    assert (json.loads(record)["commit_lsn"], json.loads(record)["seq"]) == (lsn, seq)
    messages = [r.getMessage() for r in caplog.records if r.name == "cdc.sink"]
    assert any(
        "public.notes key 13 (insert" in m and "parked in activity.dead_letters" in m
        for m in messages
    ), messages
    # Everything was acknowledged, and the chain holds over what was written.
    (acknowledged,) = pg.execute(
        "SELECT s.confirmed_flush_lsn >= c.end_lsn FROM pg_replication_slots s "
        "JOIN activity.checkpoints c ON c.slot_name = s.slot_name"
    )[0]
    assert acknowledged and stats.records == 21  # produced: 20 written, 1 parked
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        chain = verify_chain(conn, "activity", "records")
    assert chain.problem is None and chain.checked == 20


def test_cdc_check_warns_while_changes_are_parked(
    pg: PgDatabase, parking: Settings, tmp_path: Path
) -> None:
    config = tmp_path / "cdc.toml"
    config.write_text(
        f"[source]\ndsn = '{pg.dsn}'\nslot = '{pg.slot}'\npublication = '{pg.publication}'\n"
        "[sink]\non_refused = 'dead_letter'\n[[tables]]\nname = 'public.notes'\n"
    )
    runner = CliRunner()
    clean = runner.invoke(main, ["--config", str(config), "check"])
    assert "dead letters" not in clean.output
    pg.execute("INSERT INTO notes VALUES (12, 'ok'), (13, 'poison')")
    drain(parking)
    warned = runner.invoke(main, ["--config", str(config), "check"])
    assert warned.exit_code == 0, warned.output  # a warning, not a failure
    assert (
        "warn dead letters: 1 change(s) the sink refused are parked in activity.dead_letters"
        in (warned.output)
    ), warned.output


def test_a_refusal_outside_classes_22_and_23_still_stops_the_daemon(
    pg: PgDatabase, parking: Settings
) -> None:
    """Only a value or a constraint of a row (SQLSTATE 22xxx, 23xxx) is parked; anything else
    (here a trigger of the store raising P0001) stops the daemon as with "stop"."""
    from cdc.errors import SinkError

    pg.execute(
        "CREATE FUNCTION refuse_five() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.entity_id = '5' THEN RAISE EXCEPTION 'five is not welcome'; END IF; "
        "RETURN NEW; END $$"
    )
    pg.execute(
        "CREATE TRIGGER refuse_five BEFORE INSERT ON activity.records "
        "FOR EACH ROW EXECUTE FUNCTION refuse_five()"
    )
    pg.execute("INSERT INTO notes VALUES (4, 'a'), (5, 'b')")
    with pytest.raises(SinkError) as failure:
        drain(parking)
    assert "five is not welcome" in str(failure.value)
    assert pg.execute("SELECT count(*) FROM activity.dead_letters")[0][0] == 0
    assert pg.execute("SELECT count(*) FROM activity.records")[0][0] == 0
