"""``cdc triggers import-history``: the legacy audit log as records, once, with the shadow
phase's transactions skipped, through kills; then one continuous history per entity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc.cli.main import main
from tests.fix_pg import PgDatabase

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

AUDIT = """
CREATE TABLE public.audit_log (
    id bigserial PRIMARY KEY, table_name text, operation text,
    txid bigint DEFAULT txid_current(), old_data jsonb, new_data jsonb,
    changed_at timestamptz DEFAULT now());
CREATE FUNCTION public.audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.audit_log (table_name, operation, old_data, new_data)
    VALUES (TG_TABLE_NAME, TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    RETURN NULL;
END $$;
CREATE TRIGGER audit_investors AFTER INSERT OR UPDATE OR DELETE ON investors
    FOR EACH ROW EXECUTE FUNCTION public.audit_row();
"""


def cdc(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


@pytest.fixture
def config(pg: PgDatabase, tmp_path: Path) -> Path:
    pg.execute(
        "CREATE TABLE investors (id int PRIMARY KEY, name text, status text, ssn text, "
        "amount numeric(12,2), updated_by int, updated_at timestamptz)"
    )
    pg.execute(AUDIT)
    path = tmp_path / "cdc.toml"
    path.write_text(
        f"[source]\ndsn = '{pg.dsn}'\nslot = '{pg.slot}'\npublication = '{pg.publication}'\n"
        "[metrics]\nport = 0\n"
        "[[tables]]\nname = 'public.investors'\nentity_type = 'investor'\ncategory = 'kyc'\n"
        "actor_columns = ['updated_by']\nignore_columns = ['updated_at']\n"
        "redact_columns = ['ssn']\n"
        "[[tables.rules]]\ncolumn = 'status'\nfrom = 'pending'\nto = 'approved'\n"
        "action = 'investor.approved'\nseverity = 'notice'\n"
    )
    return path


def history(config: Path, entity_id: str) -> list[dict[str, object]]:
    code, out = cdc(config, "activity", "history", "investors", entity_id, "--format", "json")
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_legacy_history_joins_the_cdc_history_once_with_the_same_rules(
    pg: PgDatabase, config: Path
) -> None:
    # 1. years of triggers only
    pg.execute("INSERT INTO investors VALUES (1, 'Ada', 'pending', '123', 10.50, 7, now())")
    pg.execute("UPDATE investors SET status = 'approved', updated_by = 8 WHERE id = 1")
    pg.execute("UPDATE investors SET updated_at = now() + interval '1 s' WHERE id = 1")  # ignored
    pg.execute("INSERT INTO investors VALUES (2, 'Bo', 'pending', '456', 1, 7, now())")
    pg.execute("DELETE FROM investors WHERE id = 2")
    # 2. the shadow phase: triggers and CDC both record
    assert cdc(config, "setup")[0] == 0
    pg.execute("UPDATE investors SET amount = 20.25, updated_by = 9 WHERE id = 1")
    assert cdc(config, "run", "--drain")[0] == 0
    # 3. after the cutover: CDC only
    pg.execute("DROP TRIGGER audit_investors ON investors")
    pg.execute("UPDATE investors SET name = 'Ada L.', updated_by = 9 WHERE id = 1")
    assert cdc(config, "run", "--drain")[0] == 0

    code, out = cdc(config, "triggers", "import-history", "--dry-run")
    assert code == 0, out
    assert out.splitlines()[-1] == (
        "would import 4 records from 6 legacy rows (from the start; 1 already recorded by CDC, "
        "skipped); the log is done up to legacy id 6"
    )
    assert pg.execute("SELECT count(*) FROM activity.records WHERE source = 'legacy'") == [(0,)]
    code, out = cdc(config, "triggers", "import-history")
    assert code == 0, out
    assert "6 of 6 legacy rows (100.0%)" in out
    assert out.splitlines()[-1] == (
        "imported 4 records from 6 legacy rows (from the start; 1 already recorded by CDC, "
        "skipped); the log is done up to legacy id 6"
    )
    code, out = cdc(config, "triggers", "import-history")  # idempotent
    assert out.splitlines()[-1] == (
        "imported 0 records from 0 legacy rows (resumed after legacy id 6; 0 already recorded "
        "by CDC, skipped); the log is done up to legacy id 6"
    )

    ada = history(config, "1")
    assert [(r["source"], r["operation"], r["action"]) for r in ada] == [
        ("legacy", "insert", "investor.insert"),
        ("legacy", "update", "investor.approved"),  # the transition rule, as live
        ("shadow", "update", "investor.update"),  # the shadow phase: recorded once, by CDC
        ("shadow", "update", "investor.update"),  # (no cutover marker: still shadow mode)
    ]
    first, approved = ada[0], ada[1]
    assert first["new"]["ssn"] == "[redacted]" and first["new"]["amount"] == 10.50  # type: ignore[index]
    assert (first["actor_id"], first["category"], first["severity"]) == ("7", "kyc", "info")
    assert (approved["actor_id"], approved["severity"]) == ("8", "notice")
    assert approved["changes"] == {
        "status": {"old": "pending", "new": "approved"},
        "updated_by": {"old": 7, "new": 8},
    }
    assert approved["summary"] == "investor 1 updated by 8: status, updated_by (investor.approved)"
    bo = history(config, "2")
    assert [(r["source"], r["operation"], r["severity"]) for r in bo] == [
        ("legacy", "insert", "info"),
        ("legacy", "delete", "warning"),
    ]
    assert cdc(config, "verify-chain")[0] == 0  # the imported records are inside the chain


LEGACY_ROWS = int(os.environ.get("CDC_TEST_LEGACY_ROWS", "1000000"))


@pytest.mark.crash
def test_a_million_legacy_rows_import_exactly_once_through_three_kills(
    pg: PgDatabase, config: Path
) -> None:
    pg.execute("DROP TRIGGER audit_investors ON investors")
    pg.execute(
        "INSERT INTO public.audit_log (table_name, operation, txid, old_data, new_data, "
        "changed_at) SELECT 'investors', 'UPDATE', 1000 + g, "
        "jsonb_build_object('id', g %% 5000, 'amount', g - 1), "
        "jsonb_build_object('id', g %% 5000, 'amount', g, 'updated_by', g %% 13), "
        "timestamptz '2020-01-01' + g * interval '1 s' FROM generate_series(1, %s) g",
        (LEGACY_ROWS,),
    )
    assert cdc(config, "setup")[0] == 0
    chunk = max(1000, LEGACY_ROWS // 50)  # 50 chunks: each run is killed after a few
    command = [sys.executable, "-m", "cdc", "--config", str(config), "triggers",
               "import-history", "--chunk-rows", str(chunk)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for kill in range(3):
        with subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stderr is not None
            lines = 0
            for line in proc.stderr:  # a few committed chunks, then SIGKILL mid-chunk
                lines += "legacy rows" in line
                if lines == 3:
                    break
            time.sleep(0.05 * kill)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        done = pg.execute("SELECT last_id, records FROM activity.legacy_imports")
        assert done and 0 < done[0][0] < LEGACY_ROWS, (kill, done)
        assert done[0][0] == done[0][1]  # every committed chunk with exactly its records
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr
    assert "resumed after legacy id" in result.stdout
    counts = pg.execute(
        "SELECT count(*), count(DISTINCT (context->>'legacy_id')), "
        "min((context->>'legacy_id')::int), max((context->>'legacy_id')::int) "
        "FROM activity.records WHERE source = 'legacy'"
    )
    assert counts == [(LEGACY_ROWS, LEGACY_ROWS, 1, LEGACY_ROWS)]
    assert pg.execute("SELECT last_id, rows_read, records FROM activity.legacy_imports") == [
        (LEGACY_ROWS, LEGACY_ROWS, LEGACY_ROWS)
    ]
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.stdout.startswith("imported 0 records from 0 legacy rows")


def test_a_legacy_row_maps_to_the_record_cdc_made_of_the_same_change(
    pg: PgDatabase, config: Path
) -> None:
    """Differential: in the shadow phase the trigger and CDC see the same changes; the legacy
    mapping of each trigger row equals CDC's record of it (all but where it came from)."""
    from cdc.config import load_settings
    from cdc.cutover.history import LegacyMapper
    from cdc.pipeline.catalog import primary_keys

    pg.execute("ALTER TABLE investors ADD COLUMN tags text[], ADD COLUMN prefs jsonb, "
               "ADD COLUMN active boolean, ADD COLUMN born date")  # fmt: skip
    assert cdc(config, "setup")[0] == 0
    with pg.connect() as conn:
        conn.execute(
            "INSERT INTO investors VALUES (1, 'Ada', 'pending', '123-45', 1234567.89, 7, now(),"
            " '{a,\"b c\"}', '{\"x\": [1, 2.50]}', true, '1815-12-10')"
        )
        conn.execute("UPDATE investors SET status = 'approved', updated_by = 8 WHERE id = 1")
        conn.execute("UPDATE investors SET updated_at = now() + interval '1 s' WHERE id = 1")
        conn.execute("UPDATE investors SET prefs = '{\"x\": null}', active = false WHERE id = 1")
        conn.execute("DELETE FROM investors WHERE id = 1")
    assert cdc(config, "run", "--drain")[0] == 0
    columns = ("operation, action, category, severity, schema_name, table_name, entity_type, "
               "entity_id, actor_id, old, new, changes, summary")  # fmt: skip
    cdc_records = pg.execute(
        f"SELECT xid, {columns} FROM activity.records WHERE source = 'shadow' "
        "ORDER BY commit_lsn, seq"
    )
    assert [r[1] for r in cdc_records] == ["insert", "update", "update", "delete"]
    settings = load_settings(config)
    with pg.connect() as conn:
        key = primary_keys(conn)[("public", "investors")]
    mapper = LegacyMapper(settings, ("public", "investors"), settings.tables[0], key)
    legacy = pg.execute(
        "SELECT id, mod(txid, 4294967296), lower(operation), old_data::text, new_data::text, "
        "changed_at FROM public.audit_log ORDER BY id"
    )
    mapped = [mapper.record(*row) for row in legacy]
    assert mapped[2] is None  # only updated_at: no record, as CDC made none
    made = [record for record in mapped if record is not None]
    assert len(made) == len(cdc_records)
    for record, (xid, *expected) in zip(made, cdc_records, strict=True):
        assert record.xid == xid
        fields = [record.operation, record.action, record.category, record.severity,
                  record.schema_name, record.table_name, record.entity_type, record.entity_id,
                  record.actor_id]  # fmt: skip
        assert fields == expected[:9]
        for stored, text in zip(
            expected[9:12], (record.old, record.new, record.changes), strict=True
        ):
            assert stored == (None if text is None else json.loads(text)), record.operation
        assert record.summary == expected[12]
