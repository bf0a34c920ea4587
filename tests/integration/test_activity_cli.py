"""``cdc activity``, ``cdc activity history``, ``cdc stats`` and ``cdc partitions`` through the
command line, on a real PostgreSQL: every filter and format, keyset pages, following new
records, a row's history with its diffs, the numbers of a known workload, and the errors."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cdc.cli.main import main
from cdc.config import Settings
from cdc.pipeline.activity import ActivityRecord
from cdc.store import (
    RecordCursor,
    RecordFilter,
    open_store,
    parse_moment,
    severities_for,
    split_table,
)
from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, setup_and_settings
from tests.integration.test_store import (  # the autouse fixture: LSNs that cross 0/10000000
    DDL,
    TABLES,
    _fresh_lsns,  # noqa: F401
    db_now,
    synthetic,
    write,
)

CONFIG = """
[source]
dsn = '{dsn}'
slot = '{slot}'
publication = '{publication}'
[batch]
max_rows = 500
max_delay_ms = 20
[[tables]]
name = 'public.accounts'
entity_type = 'account'
category = 'account_management'
actor_columns = ['updated_by']
severity = {{ delete = 'error' }}
[[tables]]
name = 'public.notes'
category = 'content'
"""


@pytest.fixture
def store(pg: PgDatabase, tmp_path: Path) -> tuple[Settings, Path]:
    settings = setup_and_settings(pg, DDL, TABLES)
    config = tmp_path / "cdc.toml"
    config.write_text(CONFIG.format(dsn=pg.dsn, slot=pg.slot, publication=pg.publication))
    return settings, config


def cdc(config: Path, *args: str) -> Result:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert "Traceback" not in result.output, result.output
    return result


def ok(config: Path, *args: str) -> str:
    result = cdc(config, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


# A known workload: who did what when, written as the sink writes it.
def workload(pg: PgDatabase, settings: Settings) -> dict[str, list[ActivityRecord]]:
    now = db_now(pg)
    made = {
        "created": synthetic(
            now - timedelta(hours=3),
            actor_id="7",
            entity_id="1",
            summary="account 1 created by 7 (account.insert)",
        ),
        "updated": synthetic(
            now - timedelta(hours=2),
            operation="update",
            action="account.update",
            severity="notice",
            actor_id="8",
            entity_id="1",
            new='{"id": 1, "email": "b@example.com"}',
            changes='{"email": {"old": "a@example.com", "new": "b@example.com"}}',
            summary="account 1 updated by 8: email (account.update)",
        ),
        "note": synthetic(
            now - timedelta(hours=1),
            table="notes",
            category="content",
            entity_type="notes",
            entity_id="5",
            summary="notes 5 created (notes.insert)",
            new='{"id": 5, "body": "quarterly kyc review"}',
        ),
        "deleted": synthetic(
            now - timedelta(minutes=10),
            operation="delete",
            action="account.delete",
            severity="error",
            actor_id="8",
            entity_id="2",
            new=None,
            old='{"id": 2, "email": "gone@example.com"}',
            summary="account 2 deleted by 8 (account.delete)",
        ),
    }
    write(pg, settings, *made.values())
    return made


def lsns(records: list[dict[str, Any]]) -> list[str]:
    return [r["commit_lsn"] for r in records]


# -- cdc activity: filters -----------------------------------------------------------------


@pytest.mark.integration
def test_without_filters_every_record_is_listed_newest_first(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    made = workload(pg, settings)
    rows = json_lines(ok(config, "activity", "--format", "json"))
    order = ["deleted", "note", "updated", "created"]
    assert lsns(rows) == [made[name][0].commit_lsn for name in order]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--entity-type", "account"], ["deleted", "updated", "created"]),
        (["--entity-type", "account", "--entity-id", "1"], ["updated", "created"]),
        (["--actor", "8"], ["deleted", "updated"]),
        (["--category", "content"], ["note"]),
        (["--severity", "notice"], ["updated"]),
        (["--min-severity", "notice"], ["deleted", "updated"]),
        (["--severity", "info", "--min-severity", "notice"], []),
        (["--table", "notes"], ["note"]),
        (["--table", "public.accounts"], ["deleted", "updated", "created"]),
        (["--operation", "delete"], ["deleted"]),
        (["--since", "90m"], ["deleted", "note"]),
        (["--until", "90m"], ["updated", "created"]),
        (["--since", "150m", "--until", "30m"], ["note", "updated"]),
        # full text over the summary: the entity, the actor, the columns, the action
        (["--search", '"account 1"'], ["updated", "created"]),
        (["--search", "by 8"], ["deleted", "updated"]),
        (["--search", "email -created"], ["updated"]),
        (["--search", "account.delete"], ["deleted"]),
        (["--search", "deleted"], ["deleted"]),
        (["--search", "b@example.com"], []),  # a value: only with [store] search_values
    ],
)
def test_each_filter_selects_exactly_its_records(
    pg: PgDatabase, store: tuple[Settings, Path], options: list[str], expected: list[str]
) -> None:
    settings, config = store
    made = workload(pg, settings)
    rows = json_lines(ok(config, "activity", "--format", "json", *options))
    assert lsns(rows) == [made[name][0].commit_lsn for name in expected]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("b@example.com", ["updated"]),
        ("a@example.com", ["updated"]),  # an old value, from the diff
        ("kyc review", ["note"]),
        ('"review kyc"', []),  # a phrase: in that order only
        ("gone@example.com -account", []),
        ("deleted", ["deleted"]),  # the summary is searched too
        ("by 8", ["deleted", "updated"]),
    ],
)
def test_with_search_values_a_search_finds_records_by_their_values_too(
    pg: PgDatabase, tmp_path: Path, search: str, expected: list[str]
) -> None:
    settings = setup_and_settings(pg, DDL, TABLES, store={"search_values": True})
    config = tmp_path / "cdc.toml"
    text = CONFIG.format(dsn=pg.dsn, slot=pg.slot, publication=pg.publication)
    config.write_text(text.replace("[[tables]]", "[store]\nsearch_values = true\n[[tables]]", 1))
    made = workload(pg, settings)
    rows = json_lines(ok(config, "activity", "--format", "json", "--search", search))
    assert lsns(rows) == [made[name][0].commit_lsn for name in expected]


@pytest.mark.integration
def test_since_takes_an_iso_time_and_a_naive_one_is_utc(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    made = workload(pg, settings)
    cut = datetime.fromisoformat(made["note"][0].occurred_at).astimezone(UTC)
    naive = cut.replace(tzinfo=None).isoformat()
    rows = json_lines(ok(config, "activity", "--format", "json", "--since", naive))
    assert lsns(rows) == [made["deleted"][0].commit_lsn, made["note"][0].commit_lsn]
    with_offset = cut.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert json_lines(ok(config, "activity", "--format", "json", "--since", with_offset)) == rows


# -- formats and pages ---------------------------------------------------------------------


@pytest.mark.integration
def test_json_is_one_complete_object_per_line_with_json_columns_as_json(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    made = workload(pg, settings)
    (row,) = json_lines(ok(config, "activity", "--format", "json", "--operation", "update"))
    expected = made["updated"][0]
    assert row["changes"] == {"email": {"old": "a@example.com", "new": "b@example.com"}}
    assert row["new"] == {"id": 1, "email": "b@example.com"} and row["old"] is None
    assert datetime.fromisoformat(row["occurred_at"]) == datetime.fromisoformat(
        expected.occurred_at
    )
    assert {k: row[k] for k in ("action", "severity", "actor_id", "commit_lsn", "seq")} == {
        "action": "account.update",
        "severity": "notice",
        "actor_id": "8",
        "commit_lsn": expected.commit_lsn,
        "seq": 0,
    }


@pytest.mark.integration
def test_csv_has_a_header_and_one_row_per_record_that_a_spreadsheet_reads_back(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    workload(pg, settings)
    write(pg, settings, synthetic(db_now(pg), summary='tricky, "quoted"\nsummary'))
    rows = list(csv.DictReader(io.StringIO(ok(config, "activity", "--format", "csv"))))
    assert len(rows) == 5
    assert rows[0]["summary"] == 'tricky, "quoted"\nsummary'
    deleted = next(r for r in rows if r["operation"] == "delete")
    assert json.loads(deleted["old"]) == {"id": 2, "email": "gone@example.com"}
    assert deleted["new"] == "" and deleted["severity"] == "error"


@pytest.mark.integration
def test_json_and_csv_are_the_bytes_of_the_web_export(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    workload(pg, settings)
    write(pg, settings, synthetic(db_now(pg), new='{"balance": 1000.50, "note": "a, b: c"}'))
    with open_store(settings) as reader:
        for fmt, web_format in (("json", "jsonl"), ("csv", "csv")):
            printed = ok(config, "activity", "--format", fmt, "--limit", "0").encode()
            assert printed == b"".join(reader.export(RecordFilter(), fmt=web_format))
    (row, *_) = json_lines(ok(config, "activity", "--format", "json"))
    assert row["new"] == {"balance": 1000.5, "note": "a, b: c"}
    assert '"new":{"balance": 1000.50, "note": "a, b: c"}' in ok(
        config, "activity", "--format", "json"
    )


@pytest.mark.integration
def test_the_table_format_shows_time_severity_operation_entity_actor_and_summary(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    workload(pg, settings)
    lines = ok(config, "activity", "--entity-id", "2").splitlines()
    assert len(lines) == 2
    assert lines[0] == (
        "time (UTC)           severity  operation  entity                    actor       summary"
    )
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  error\s+delete\s+account 2\s+8\s+"
        r"account 2 deleted by 8 \(account\.delete\)",
        lines[1],
    ), lines
    # the header's columns start where the record's do
    for column in ("severity", "operation", "entity", "actor", "summary"):
        start = lines[0].index(column)
        assert lines[1][start - 2 : start] == "  " and lines[1][start] != " ", column


@pytest.mark.integration
def test_an_unknown_table_is_a_config_error_naming_the_closest_one(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    workload(pg, settings)
    result = cdc(config, "activity", "--table", "acounts")
    assert result.exit_code == 4
    assert result.output == (
        "error: unknown table 'acounts': it is not in the config's [[tables]]; did you mean "
        "accounts? configured: public.accounts, public.notes\n"
    )
    assert cdc(config, "activity", "--table", "public.accounts").exit_code == 0
    assert cdc(config, "activity", "--table", "accounts").exit_code == 0


@pytest.mark.integration
def test_pages_follow_each_other_with_before_and_together_are_the_whole_list_once(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    now = db_now(pg)
    # 3 transactions of 4 records, two of them at the same commit time: the cursor must break
    # ties by (commit_lsn, seq)
    write(
        pg,
        settings,
        synthetic(now - timedelta(minutes=2), 4),
        synthetic(now - timedelta(minutes=1), 4),
        synthetic(now - timedelta(minutes=1), 4),
    )
    everything = json_lines(ok(config, "activity", "--format", "json", "--limit", "0"))
    assert len(everything) == 12
    pages: list[list[dict[str, Any]]] = []
    args = ["activity", "--format", "json", "--limit", "5"]
    while True:
        result = cdc(config, *args)
        assert result.exit_code == 0, result.output
        pages.append(json_lines(result.stdout))
        more = re.search(r"next page: --before '([^']+)'", result.stderr)
        if more is None:
            break
        args = ["activity", "--format", "json", "--limit", "5", "--before", more.group(1)]
    assert [len(page) for page in pages] == [5, 5, 2]
    assert [r for page in pages for r in page] == everything


# -- following -----------------------------------------------------------------------------


@pytest.mark.integration
def test_follow_prints_the_latest_records_then_each_new_one_once_in_commit_order(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    now = db_now(pg)
    before = synthetic(now - timedelta(minutes=1), 3)
    write(pg, settings, before)
    later = [synthetic(now + timedelta(seconds=n), 4) for n in range(5)]
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            # write only once the follower has taken its position (its newest-record query),
            # so that these records can only reach it through its polls
            deadline = time.monotonic() + 60
            while not pg.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE %s AND pid <> pg_backend_pid()",
                ("%ORDER BY r.commit_lsn DESC%",),
            ):
                assert time.monotonic() < deadline, "the follower never started"
                time.sleep(0.02)
            for records in later:
                write(pg, settings, records)
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        out = ok(
            config,
            "activity",
            "--follow",
            "--format",
            "json",
            "--interval",
            "0.05",
            "--max-records",
            "23",
            "--max-polls",
            "2000",  # a bound, so that a broken follow fails instead of hanging
        )
    finally:
        thread.join()
    assert not failures, failures
    shown = [(r["commit_lsn"], r["seq"]) for r in json_lines(out)]
    assert shown == [(r.commit_lsn, r.seq) for r in before + [r for t in later for r in t]]


@pytest.mark.integration
def test_follow_prints_the_bytes_of_a_page_oldest_first(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    workload(pg, settings)
    for fmt in ("json", "csv"):
        page = ok(config, "activity", "--format", fmt, "--limit", "3").splitlines()
        followed = ok(
            config, "activity", "--follow", "--format", fmt, "--limit", "3", "--max-polls", "0"
        ).splitlines()
        header = page[:1] if fmt == "csv" else []
        assert followed == header + page[len(header) :][::-1]


@pytest.mark.integration
def test_follow_cannot_be_combined_with_a_page_cursor(store: tuple[Settings, Path]) -> None:
    _settings, config = store
    result = cdc(config, "activity", "--follow", "--until", "1h")
    assert result.exit_code == 2 and "--follow" in result.output


# -- history -------------------------------------------------------------------------------


@pytest.mark.integration
def test_history_shows_one_rows_changes_oldest_first_with_diffs(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    with pg.connect() as conn:
        conn.execute("INSERT INTO accounts VALUES (1, 'a@example.com', 7), (2, 'x', 7)")
        conn.execute("UPDATE accounts SET email = 'b@example.com', updated_by = 8 WHERE id = 1")
        conn.execute("INSERT INTO notes (id, account_id, body) VALUES (1, 1, 'same key')")
        conn.execute("UPDATE accounts SET email = 'c@example.com' WHERE id = 1")
        conn.execute("DELETE FROM accounts WHERE id = 1")
    drain(settings)

    out = ok(config, "activity", "history", "accounts", "1")
    lines = [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", "", line) for line in out.splitlines()]
    assert lines == [
        "insert    account 1 created by 7 (account.insert)",
        "    id: 1",
        "    email: a@example.com",
        "    updated_by: 7",
        "update    account 1 updated by 8: email, updated_by (account.update)",
        "    email: a@example.com → b@example.com",
        "    updated_by: 7 → 8",
        "update    account 1 updated by 8: email (account.update)",
        "    email: b@example.com → c@example.com",
        "delete    account 1 deleted by 8 (account.delete)",
    ]
    as_json = json_lines(
        ok(config, "activity", "history", "public.accounts", "1", "--format", "json")
    )
    assert [r["operation"] for r in as_json] == ["insert", "update", "update", "delete"]


@pytest.mark.integration
def test_history_as_json_is_the_bytes_of_the_export_oldest_first(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    workload(pg, settings)
    history = ok(config, "activity", "history", "public.accounts", "1", "--format", "json")
    page = ok(config, "activity", "--format", "json", "--table", "public.accounts",
              "--entity-type", "account", "--entity-id", "1")  # fmt: skip
    assert history.splitlines() == page.splitlines()[::-1] and len(history.splitlines()) == 2
    none = cdc(config, "activity", "history", "public.accounts", "404", "--format", "json")
    assert none.exit_code == 0 and none.stdout == "" and "no records" in none.stderr


@pytest.mark.integration
def test_history_of_a_table_that_is_not_configured_asks_for_its_schema(
    store: tuple[Settings, Path],
) -> None:
    _settings, config = store
    result = cdc(config, "activity", "history", "invoices", "1")
    assert result.exit_code == 2
    assert "give the table 'invoices' as schema.table (it is not a configured table)" in (
        result.output
    )


# -- stats ---------------------------------------------------------------------------------


def stats_workload(pg: PgDatabase, settings: Settings) -> None:
    now = db_now(pg)
    write(
        pg,
        settings,
        synthetic(now - timedelta(minutes=30), 3),  # account_management, info
        synthetic(now - timedelta(minutes=90), 2, category="content", table="notes"),
        synthetic(now - timedelta(hours=26), 4, severity="error"),
    )


@pytest.mark.integration
def test_stats_of_a_day_count_each_breakdown_and_compare_with_the_day_before(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    stats_workload(pg, settings)
    result = json.loads(ok(config, "stats", "--since", "24h", "--json"))
    assert (result["total"], result["previous_total"]) == (5, 4)
    assert result["change"] == pytest.approx(0.25)
    assert result["window"]["grain_seconds"] == 3600
    breakdowns = {
        name: [(c["value"], c["n"], c["previous"]) for c in counts]
        for name, counts in result["breakdowns"].items()
    }
    assert breakdowns == {
        "source": [("database", 5, 4)],
        "category": [("account_management", 3, 4), ("content", 2, 0)],
        "severity": [("info", 5, 0), ("error", 0, 4)],
        "table": [("public.accounts", 3, 4), ("public.notes", 2, 0)],
    }
    assert len(result["trend"]) == 24 and sum(p["n"] for p in result["trend"]) == 5


@pytest.mark.integration
def test_stats_of_an_hour_use_the_minute_rollups(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    stats_workload(pg, settings)
    result = json.loads(ok(config, "stats", "--since", "1h", "--by", "table", "--json"))
    assert result["window"]["grain_seconds"] == 60
    assert (result["total"], result["previous_total"]) == (3, 2)
    assert result["breakdowns"] == {
        "table": [
            {"value": "public.accounts", "n": 3, "previous": 0, "change": None},
            {"value": "public.notes", "n": 0, "previous": 2, "change": -1.0},
        ]
    }


@pytest.mark.integration
def test_stats_as_text_name_the_window_the_breakdowns_and_the_trend(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    stats_workload(pg, settings)
    out = ok(config, "stats", "--since", "24h", "--by", "category")
    assert re.match(
        r"5 records from .* UTC \(per-hour rollups\)\nthe 1d before: 4 \(\+25\.0%\)", out
    )
    assert re.search(r"\n  account_management\s+3\s+60\.0%\s+4\s+-25\.0%\n", out), out
    assert re.search(r"\n  content\s+2\s+40\.0%\s+0\s+new\n", out), out
    assert "trend (per 1h)" in out


# -- partitions ----------------------------------------------------------------------------


@pytest.mark.integration
def test_partitions_dry_run_then_run_with_export(
    pg: PgDatabase, store: tuple[Settings, Path], tmp_path: Path
) -> None:
    settings, config = store
    pg.execute(
        "SELECT activity.create_record_partition('records_2020_01', '2020-01-01Z', '2020-02-01Z')"
    )
    write(pg, settings, synthetic(datetime(2020, 1, 5, tzinfo=UTC), 2))
    exports = tmp_path / "exports"
    exports.mkdir()

    dry = ok(config, "partitions", "--retention-months", "24", "--ahead", "4", "--dry-run")
    assert "would: detach and drop activity.records_2020_01 (2020-01, before " in dry
    assert re.search(r"would: create partition activity\.records_\d{4}_\d\d\n", dry)
    assert pg.execute("SELECT count(*) FROM activity.records") == [(2,)]

    out = ok(config, "partitions", "--retention-months", "24", "--ahead", "4",
             "--export-dir", str(exports))  # fmt: skip
    assert f"done: exported 2 records of activity.records_2020_01 to {exports}" in out
    assert "done: dropped activity.records_2020_01" in out
    assert (exports / "activity.records_2020_01.csv").read_text().count("\n") == 3
    assert ok(config, "partitions", "--retention-months", "24", "--ahead", "4") == (
        "nothing to do: the partitions are in place\n"
    )


@pytest.mark.integration
def test_partitions_reports_records_waiting_in_the_default_partition(
    pg: PgDatabase, store: tuple[Settings, Path]
) -> None:
    settings, config = store
    write(pg, settings, synthetic(datetime(2019, 5, 5, tzinfo=UTC)))
    out = ok(config, "partitions", "--dry-run")
    assert "note: the default partition holds 1 record(s)" in out


# -- errors --------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["activity", "--since", "yesterday"], "'yesterday' is not a time"),
        (["activity", "--before", "nonsense"], "'nonsense' is not a cursor"),
        (["activity", "--severity", "loud"], "'loud' is not one of"),
        (["stats", "--since", "3 days"], "'3 days' is not a duration"),
        (["stats", "--by", "colour"], "'colour' is not one of"),
        (["stats", "--since", "0m"], "'0m' is no window"),
        (["stats", "--since", "99999999d"], "longer than 100 years"),
        (["activity", "--since", "99999999d"], "longer than 100 years"),
        (["activity", "--until", "9999999999999999999999w"], "longer than 100 years"),
        (["verify-chain", "--since", "99999999d"], "longer than 100 years"),
    ],
)
def test_a_bad_option_is_a_usage_error_that_says_what_is_expected(
    store: tuple[Settings, Path], args: list[str], message: str
) -> None:
    _settings, config = store
    result = cdc(config, *args)
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.integration
def test_reading_a_database_without_the_store_says_to_run_setup(
    pg: PgDatabase, tmp_path: Path
) -> None:
    config = tmp_path / "cdc.toml"
    config.write_text(CONFIG.format(dsn=pg.dsn, slot=pg.slot, publication=pg.publication))
    for args in (["activity"], ["stats"], ["partitions"]):
        result = cdc(config, *args)
        assert result.exit_code == 8, result.output
        assert 'run "cdc setup"' in result.output


# -- the parsing of command-line values (no database) --------------------------------------


def test_a_relative_time_is_before_now_and_an_iso_time_without_offset_is_utc() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert parse_moment("15m", now) == now - timedelta(minutes=15)
    assert parse_moment("2h", now) == now - timedelta(hours=2)
    assert parse_moment("7d", now) == now - timedelta(days=7)
    assert parse_moment("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_moment("2026-11-01T10:00:00+02:00", now) == datetime(2026, 11, 1, 8, tzinfo=UTC)
    with pytest.raises(ValueError, match="is not a time"):
        parse_moment("last week", now)


def test_a_cursor_prints_and_parses_back_to_itself() -> None:
    cursor = RecordCursor(datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC), "16/B374D848", 3)
    assert str(cursor) == "2026-11-26T10:00:00.123456+00:00,16/B374D848,3"
    assert RecordCursor.parse(str(cursor)) == cursor
    with pytest.raises(ValueError, match="not a cursor"):
        RecordCursor.parse("2026-11-26T10:00:00+00:00,16/B374D848")


def test_min_severity_selects_that_severity_and_the_ones_above_it() -> None:
    assert severities_for(None, "warning") == ("warning", "error", "critical")
    assert severities_for("error", "warning") == ("error",)
    assert severities_for("info", "warning") == ()
    assert severities_for(None, None) is None


def test_a_table_name_may_be_qualified_and_quoted() -> None:
    assert split_table("accounts") == (None, "accounts")
    assert split_table("public.accounts") == ("public", "accounts")
    assert split_table('"my.schema".accounts') == ("my.schema", "accounts")
