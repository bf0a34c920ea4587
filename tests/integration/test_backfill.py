"""``cdc backfill``: a baseline from a snapshot consistent with the stream, taken while writers
run: the baseline plus the records after it replay to the table exactly."""

from __future__ import annotations

import json
import random
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cdc.cli.main import main
from tests.fix_pg import PgDatabase

pytestmark = pytest.mark.integration


def cdc(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


@pytest.fixture
def config(pg: PgDatabase, tmp_path: Path) -> Path:
    pg.execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric(12,2), "
        "secret_pin text, updated_by int)"
    )
    path = tmp_path / "cdc.toml"
    path.write_text(
        f"[source]\ndsn = '{pg.dsn}'\nslot = '{pg.slot}'\npublication = '{pg.publication}'\n"
        "[metrics]\nport = 0\n"
        "[[tables]]\nname = 'public.accounts'\nentity_type = 'account'\n"
        "actor_columns = ['updated_by']\nredact_columns = ['secret_pin']\n"
    )
    return path


def writer(pg: PgDatabase, stop: threading.Event, done: list[int], seed: int) -> None:
    rng = random.Random(seed)
    with pg.connect() as conn:
        while not stop.is_set():
            key = rng.randrange(1, 4000)
            with conn.transaction():
                conn.execute(
                    "INSERT INTO accounts VALUES (%s, 'new', 1, 'p', 9) ON CONFLICT (id) DO "
                    "UPDATE SET balance = accounts.balance + 1, updated_by = 8",
                    (key,),
                )
                if rng.random() < 0.3:
                    conn.execute("DELETE FROM accounts WHERE id = %s", (rng.randrange(1, 4000),))
            done[0] += 1


def test_a_baseline_taken_under_writers_replays_with_the_stream_to_the_table(
    pg: PgDatabase, config: Path
) -> None:
    pg.execute(
        "INSERT INTO accounts SELECT g, 'owner ' || g, g * 1.5, 'pin' || g, g % 7 "
        "FROM generate_series(1, 3000) g"
    )
    assert cdc(config, "setup")[0] == 0
    stop, done = threading.Event(), [0]
    threads = [threading.Thread(target=writer, args=(pg, stop, done, s)) for s in (1, 2)]
    for thread in threads:
        thread.start()
    try:
        while done[0] < 200:  # writers are well under way before the snapshot ...
            stop.wait(0.01)
        code, out = cdc(config, "backfill", "--table", "accounts")
        seen = done[0]
        while done[0] < seen + 200:  # ... and go on after it
            stop.wait(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert code == 0, out
    match = re.fullmatch(
        r"public\.accounts: ([\d,]+) baseline records at ([0-9A-F]+/[0-9A-F]+) "
        r"\(snapshot of .*\)",
        out.splitlines()[-1],
    )
    assert match, out
    assert cdc(config, "run", "--drain")[0] == 0

    baseline = pg.execute(
        "SELECT entity_id, new::text, commit_lsn::text, actor_id FROM activity.records "
        "WHERE operation = 'snapshot' ORDER BY seq"
    )
    assert len(baseline) == int(match.group(1).replace(",", ""))
    assert {row[2] for row in baseline} == {match.group(2)}  # one consistent point
    assert len({row[0] for row in baseline}) == len(baseline)  # no row twice
    state: dict[str, Any] = {key: json.loads(new) for key, new, _, _ in baseline}
    # C is where the snapshot's WAL ends; a record's commit_lsn is where its commit record
    # starts, so a transaction that commits right at C has commit_lsn = C and is not in the
    # snapshot: it replays after the baseline (>=, not >; seen: a delete at C, 1 run in ~20).
    after = pg.execute(
        "SELECT operation, entity_id, new::text FROM activity.records "
        "WHERE operation <> 'snapshot' AND commit_lsn >= %s::pg_lsn ORDER BY commit_lsn, seq",
        (match.group(2),),
    )
    assert after, "the writers wrote nothing after the snapshot"
    for operation, key, new in after:
        if operation == "delete":
            state.pop(key)
        else:
            state[key] = json.loads(new)
    table = {
        str(key): row
        for key, row in pg.execute("SELECT id, to_jsonb(a) FROM accounts a ORDER BY id")
    }
    for row in table.values():
        row["secret_pin"] = "[redacted]"  # what the records hold instead
    assert state == table
    # the same mapping as the stream: redaction, entity; a baseline has no actor
    assert all(json.loads(new)["secret_pin"] == "[redacted]" for _, new, _, _ in baseline)
    assert {actor for *_, actor in baseline} == {None}
    summary = pg.execute(
        "SELECT action, severity, summary FROM activity.records "
        "WHERE operation = 'snapshot' AND entity_id = '1'"
    )
    assert summary in (
        [],
        [("account.snapshot", "info", "account 1 at the baseline (account.snapshot)")],
    )
    assert cdc(config, "verify-chain")[0] == 0  # the baseline is inside the hash chain


def test_backfill_names_an_unknown_table(pg: PgDatabase, config: Path) -> None:
    code, out = cdc(config, "backfill", "--table", "acounts")
    assert code == 4
    assert "unknown table 'acounts'" in out and "did you mean accounts?" in out
