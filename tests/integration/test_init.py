"""``cdc init``: a starting config from the catalog that loads, sets up and records."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc.cli.main import main
from cdc.control.init import entity_type, redact_columns
from tests.fix_pg import PgDatabase

pytestmark = pytest.mark.integration


def init(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["init", *args], env=env)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def catalog(pg: PgDatabase) -> PgDatabase:
    pg.execute(
        "CREATE TABLE investors (id bigint PRIMARY KEY, name text, ssn text, password_hash text,"
        " updated_by int, created_by int, updated_at timestamptz);"
        "CREATE TABLE companies (id int, region text, PRIMARY KEY (region, id), iban text);"
        "CREATE TABLE events (at timestamptz, what text);"  # no primary key
        'CREATE SCHEMA "my.app"; CREATE TABLE "my.app".orders (id int PRIMARY KEY, user_id int);'
    )
    return pg


def test_init_writes_a_config_that_sets_up_and_records(catalog: PgDatabase, tmp_path: Path) -> None:
    pg = catalog
    config = tmp_path / "cdc.toml"
    code, out = init("--dsn", f"{pg.dsn} password=Secr3t-pw", "--config", str(config))
    assert code == 0, out
    assert out == (
        f"wrote {config}: 3 table(s); read it, then: cdc --config {config} setup --dry-run\n"
    )
    text = config.read_text()
    assert "Secr3t-pw" not in text
    tables = text[text.index("[[tables]]") :]
    assert tables == (
        "[[tables]]\n"
        'name = "\\"my.app\\".orders"\n'
        'entity_type = "order"\n'
        "# entity id: the primary key (id)\n"
        'actor_columns = ["user_id"]\n'
        "\n"
        "[[tables]]\n"
        'name = "public.companies"\n'
        'entity_type = "company"\n'
        "# entity id: the primary key (region, id)\n"
        'redact_columns = ["iban"]\n'
        "\n"
        "# public.events has no primary key, so its records would have no entity id;\n"
        "# add one and run cdc init again, or add it here by hand:\n"
        "# [[tables]]\n"
        '# name = "public.events"\n'
        "\n"
        "[[tables]]\n"
        'name = "public.investors"\n'
        'entity_type = "investor"\n'
        "# entity id: the primary key (id)\n"
        'actor_columns = ["updated_by", "created_by"]\n'
        'ignore_columns = ["updated_at"]  # an update of only these is no activity\n'
        'redact_columns = ["ssn"]\n'  # password_hash: the default patterns redact it already
    )
    base = ["--config", str(config)]
    env = {"CDC_SOURCE__SLOT": pg.slot, "CDC_SOURCE__PUBLICATION": pg.publication}
    runner = CliRunner()
    assert runner.invoke(main, [*base, "setup"], env=env).exit_code == 0
    pg.execute(
        "INSERT INTO investors VALUES (1, 'Ada', '123-45-6789', 'h', 7, 7, now());"
        'INSERT INTO "my.app".orders VALUES (1, 7)'
    )
    result = runner.invoke(main, [*base, "run", "--drain"], env=env)
    assert result.exit_code == 0, result.output
    rows = pg.execute(
        "SELECT entity_type, entity_id, actor_id, new->>'ssn', new->>'password_hash' "
        "FROM activity.records ORDER BY entity_type"
    )
    assert rows == [
        ("investor", "1", "7", "[redacted]", "[redacted]"),
        ("order", "1", "7", None, None),
    ]


def test_init_takes_the_tables_asked_for_and_refuses_what_is_not_there(
    catalog: PgDatabase, tmp_path: Path
) -> None:
    out_path = tmp_path / "one.toml"
    code, _ = init(
        "--dsn", catalog.dsn, "--tables", "investors,my.app.*", "--output", str(out_path)
    )
    assert code == 0
    text = out_path.read_text()
    assert 'name = "public.investors"' in text and 'name = "\\"my.app\\".orders"' in text
    assert "companies" not in text
    code, out = init("--dsn", catalog.dsn, "--tables", "investorz", "--output", "-")
    assert code == 4
    assert out.startswith("error: --tables 'investorz' matches no table of the source database;")
    code, out = init("--dsn", catalog.dsn, "--output", str(out_path))
    assert code == 4
    assert (
        out == f"error: {out_path} exists; pass --force to replace it, or --output another path\n"
    )
    assert init("--dsn", catalog.dsn, "--output", str(out_path), "--force")[0] == 0
    code, out = init("--output", "-", env={"CDC_SOURCE_DSN": ""})
    assert code == 2 and "--dsn DSN or $CDC_SOURCE_DSN" in out
    code, out = init("--dsn", catalog.dsn, "--tables", "events", "--output", "-")
    assert code == 4 and "none of the chosen tables has a primary key" in out


def test_entity_types_and_sensitive_columns() -> None:
    assert [entity_type(t) for t in ("investors", "companies", "addresses", "kyc", "boxes")] == [
        "investor", "company", "address", "kyc", "box",
    ]  # fmt: skip
    assert redact_columns(["id", "ssn", "tax_id", "card_number", "api_key", "pinned", "iban"]) == [
        "ssn", "tax_id", "card_number", "iban",
    ]  # fmt: skip
