"""Settings (cdc.config): every bad config is one ConfigError naming the file and the field.

Configs are written to files under tmp_path and read with load_settings, the way the CLI reads
them, so the origin in each message is a real path. The environment overrides are cleared for
every test so that the machine running the tests cannot change the outcome.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pytest
from psycopg import sql

from cdc.config import (
    DEFAULT_CONFIG_PATH,
    config_path,
    load_settings,
    settings_from_mapping,
    split_qualified_name,
)
from cdc.errors import ConfigError

PASSWORD = "hunter2"
SOURCE = f'[source]\ndsn = "host=db user=cdc password={PASSWORD}"\n'
USERS = '[[tables]]\nname = "public.users"\n'
VALID = SOURCE + USERS


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CDC_SOURCE_DSN", "CDC_SINK_DSN", "CDC_CONFIG"):
        monkeypatch.delenv(var, raising=False)


class Bad(NamedTuple):
    content: str | bytes | None  # None: no file at all
    fragments: tuple[str, ...]  # each must appear in the message


DIRECTORY = b"<a directory>"

BAD_CONFIGS: dict[str, Bad] = {
    "missing tables": Bad(SOURCE, ("tables", "Field required")),
    "empty tables list": Bad("tables = []\n" + SOURCE, ("tables: ", "at least 1")),
    "tables not a list": Bad('tables = "public.users"\n' + SOURCE, ("tables: ",)),
    "table without name": Bad(SOURCE + '[[tables]]\ncategory = "x"\n', ("tables.0.name",)),
    "table name without schema": Bad(
        SOURCE + '[[tables]]\nname = "users"\n', ("tables.0.name", "schema.table")
    ),
    "table name with three parts": Bad(
        SOURCE + '[[tables]]\nname = "db.public.users"\n', ("tables.0.name",)
    ),
    "hostile table name without schema": Bad(
        SOURCE + '[[tables]]\nname = "users; drop table x"\n', ("tables.0.name",)
    ),
    "duplicated table": Bad(VALID + USERS, ("public.users", "listed twice")),
    "duplicated table once quoted": Bad(
        VALID + '[[tables]]\nname = \'"public"."users"\'\n', ("listed twice",)
    ),
    "typo in batch section": Bad(VALID + "[batch]\nmax_rowz = 10\n", ("batch.max_rowz",)),
    "typo in a table": Bad(
        SOURCE + '[[tables]]\nname = "public.users"\nactor_colums = ["x"]\n',
        ("tables.0.actor_colums",),
    ),
    "typo in severity": Bad(
        SOURCE + '[[tables]]\nname = "public.users"\nseverity = { updat = "info" }\n',
        ("tables.0.severity.updat",),
    ),
    "unknown section": Bad(VALID + "[sourcee]\nslot = 'x'\n", ("sourcee",)),
    "on_refused not a known policy": Bad(
        VALID + "[sink]\non_refused = 'skip'\n", ("sink.on_refused", "stop", "dead_letter")
    ),
    "hash_chain not a boolean": Bad(VALID + "[sink]\nhash_chain = 'maybe'\n", ("sink.hash_chain",)),
    "max_rows not a number": Bad(VALID + '[batch]\nmax_rows = "many"\n', ("batch.max_rows",)),
    "max_rows zero": Bad(VALID + "[batch]\nmax_rows = 0\n", ("batch.max_rows",)),
    "max_rows fractional": Bad(VALID + "[batch]\nmax_rows = 2.5\n", ("batch.max_rows",)),
    "negative delay": Bad(VALID + "[batch]\nmax_delay_ms = -1\n", ("batch.max_delay_ms",)),
    "status interval too short": Bad(
        SOURCE + "status_interval_ms = 5\n" + USERS, ("source.status_interval_ms",)
    ),
    "bad severity": Bad(
        SOURCE + '[[tables]]\nname = "public.users"\nseverity = { update = "loud" }\n',
        ("tables.0.severity.update", "critical"),
    ),
    "action template with unknown field": Bad(
        SOURCE + '[[tables]]\nname = "public.users"\naction = "{nope}"\n',
        ("tables.0.action", "{nope}", "{entity_type}"),
    ),
    "action template unbalanced": Bad(
        SOURCE + '[[tables]]\nname = "public.users"\naction = "{entity_type"\n',
        ("tables.0.action",),
    ),
    "action template positional": Bad(
        SOURCE + '[[tables]]\nname = "public.users"\naction = "{0}.x"\n', ("tables.0.action",)
    ),
    "bad redaction regex": Bad(
        VALID + '[redaction]\npatterns = ["(unclosed"]\n', ("redaction.patterns", "(unclosed")
    ),
    "slot with upper case": Bad(SOURCE + 'slot = "Activity"\n' + USERS, ("source.slot",)),
    "slot with a hyphen": Bad(SOURCE + 'slot = "activity-cdc"\n' + USERS, ("source.slot",)),
    "slot with a trailing newline": Bad(
        SOURCE + 'slot = "activity\\n"\n' + USERS, ("source.slot",)
    ),
    "slot longer than 63": Bad(SOURCE + f'slot = "{"s" * 64}"\n' + USERS, ("source.slot",)),
    "empty publication": Bad(SOURCE + 'publication = ""\n' + USERS, ("source.publication",)),
    "source not a table": Bad('source = "host=db"\n' + USERS, ("source",)),
    "missing source dsn": Bad(USERS, ("source.dsn", "CDC_SOURCE_DSN")),
    "empty source dsn": Bad('[source]\ndsn = ""\n' + USERS, ("source.dsn",)),
    "sink table equal to a captured table": Bad(
        VALID + '[sink]\ntable = "public.users"\n', ("sink table", "public.users")
    ),
    "sink table without schema": Bad(VALID + '[sink]\ntable = "records"\n', ("sink.table",)),
    "actor_column and actor_columns": Bad(
        SOURCE + '[[tables]]\nname = "public.users"\nactor_column = "a"\nactor_columns = ["b"]\n',
        ("tables.0", "actor_column"),
    ),
    "TOML syntax error": Bad(VALID + "[batch\n", ("not valid TOML", "line")),
    "TOML section declared twice": Bad(VALID + '[source]\nslot = "x"\n', ("not valid TOML",)),
    "not UTF-8": Bad(VALID.encode() + b"# \xff\xfe caf\xe9\n", ("not UTF-8",)),
    "file not found": Bad(None, ("not found", "--config", "CDC_CONFIG")),
    "live views taking the whole pool": Bad(
        VALID + "[web]\npool_max_size = 4\nlive_max_views = 4\n",
        ("web", "live_max_views (4) must be below pool_max_size (4)"),
    ),
    "a directory instead of a file": Bad(DIRECTORY, ("cannot read",)),
}


def write_config(tmp_path: Path, content: str | bytes | None) -> Path:
    path = tmp_path / "conf" / "cdc.toml"
    path.parent.mkdir()
    if content is DIRECTORY:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.exit_code == 4
    return str(info.value)


@pytest.mark.parametrize("case", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_raises_one_config_error_naming_the_file_and_the_field(
    tmp_path: Path, case: Bad
) -> None:
    path = write_config(tmp_path, case.content)
    message = load_error(path)
    assert message.startswith(f"{path}: "), message
    for fragment in case.fragments:
        assert fragment in message
    assert PASSWORD not in message


def test_the_valid_base_config_loads(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, VALID))
    assert settings.source.dsn == f"host=db user=cdc password={PASSWORD}"
    assert [(t.schema_name, t.table_name) for t in settings.tables] == [("public", "users")]
    assert settings.sink_dsn == settings.source.dsn, "without [sink] dsn the source holds records"


def test_live_views_may_take_half_the_pool_unless_told_otherwise(tmp_path: Path) -> None:
    assert load_settings(write_config(tmp_path, VALID)).web.live_views_allowed == 5
    told = VALID + "[web]\npool_max_size = 2\nlive_max_views = 1\n"
    (tmp_path / "x").mkdir()
    assert load_settings(write_config(tmp_path / "x", told)).web.live_views_allowed == 1


def test_one_bad_table_entry_is_reported_without_a_claim_that_tables_is_empty(
    tmp_path: Path,
) -> None:
    content = SOURCE + '[[tables]]\nname = "public.users"\naction = "{nope}"\n'
    message = load_error(write_config(tmp_path, content))
    assert "tables.0.action" in message
    assert "at least 1 item" not in message


# -- hostile and quoted names ---------------------------------------------------------------


def test_hostile_table_name_is_kept_as_one_literal_identifier(tmp_path: Path) -> None:
    content = SOURCE + '[[tables]]\nname = "public.users; drop table x"\n'
    settings = load_settings(write_config(tmp_path, content))
    rules = settings.tables[0]
    assert (rules.schema_name, rules.table_name) == ("public", "users; drop table x")
    # composed the way cdc.control.setup composes table names: quoted, so it stays one name
    composed = sql.SQL("{}.{}").format(
        sql.Identifier(rules.schema_name), sql.Identifier(rules.table_name)
    )
    assert composed.as_string(None) == '"public"."users; drop table x"'


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ('"my.schema".tbl', ("my.schema", "tbl")),
        ('app."odd.table"', ("app", "odd.table")),
        ('"a""b"."c"', ('a"b', "c")),
        ("public.users", ("public", "users")),
        ("Public.Users", ("Public", "Users")),
    ],
)
def test_qualified_names_split_into_schema_and_table(name: str, parts: tuple[str, str]) -> None:
    assert split_qualified_name(name) == parts


def test_quoted_qualified_table_name_in_a_config_file(tmp_path: Path) -> None:
    content = SOURCE + "[[tables]]\nname = '\"my.schema\".tbl'\n"
    settings = load_settings(write_config(tmp_path, content))
    assert settings.rules_for("my.schema", "tbl") is settings.tables[0]
    assert settings.rules_for("my", "schema.tbl") is None


@pytest.mark.parametrize("name", ['"unterminated.tbl', "public.", ".users", "a.b.c", '"".t'])
def test_names_that_are_not_schema_dot_table_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="qualified name"):
        split_qualified_name(name)


# -- aliases and defaults ---------------------------------------------------------------------


def test_actor_column_is_an_alias_for_a_single_actor_columns_entry(tmp_path: Path) -> None:
    content = SOURCE + '[[tables]]\nname = "public.users"\nactor_column = "updated_by"\n'
    rules = load_settings(write_config(tmp_path, content)).tables[0]
    assert rules.actor_columns == ("updated_by",)


def test_table_rules_defaults_when_only_the_name_is_given(tmp_path: Path) -> None:
    rules = load_settings(write_config(tmp_path, VALID)).tables[0]
    assert rules.category == "data_change"
    assert rules.action == "{entity_type}.{operation}"
    assert rules.entity_type is None
    assert (
        rules.severity.insert,
        rules.severity.update,
        rules.severity.delete,
        rules.severity.truncate,
    ) == ("info", "info", "warning", "critical")


# -- environment overrides --------------------------------------------------------------------


def test_env_dsns_win_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    content = VALID + '[sink]\ndsn = "host=file-sink"\n'
    path = write_config(tmp_path, content)
    monkeypatch.setenv("CDC_SOURCE_DSN", "host=env-source")
    monkeypatch.setenv("CDC_SINK_DSN", "host=env-sink")
    settings = load_settings(path)
    assert settings.source.dsn == "host=env-source"
    assert settings.sink.dsn == "host=env-sink"
    assert settings.sink_dsn == "host=env-sink"


def test_env_source_dsn_fills_a_file_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDC_SOURCE_DSN", "host=env-source")
    settings = load_settings(write_config(tmp_path, USERS))
    assert settings.source.dsn == "host=env-source"
    assert settings.sink_dsn == "host=env-source"


def test_empty_env_dsn_does_not_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDC_SOURCE_DSN", "")
    settings = load_settings(write_config(tmp_path, VALID))
    assert settings.source.dsn == f"host=db user=cdc password={PASSWORD}"


def test_env_dsn_over_a_section_that_is_not_a_table_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"x\.toml: .*\[source\] must be a table"):
        settings_from_mapping(
            {"source": "nope", "tables": [{"name": "public.users"}]},
            origin="x.toml",
            env={"CDC_SOURCE_DSN": "host=a"},
        )


@pytest.mark.parametrize(
    "dsn",
    [f"host=db user=cdc password={PASSWORD}", f"postgresql://cdc:{PASSWORD}@db:5432/app"],
)
@pytest.mark.parametrize(
    "invalid",
    [
        '[batch]\nmax_rows = "many"\n',
        '[sink]\ntable = "public.users"\n',
        '[sink]\ndsn = "host=other"\ntable = "nodot"\n',
        "[source]\nslot = 'Bad-Slot'\n",
        "[source]\ndns = 'typo'\n",
        "[redaction]\npatterns = ['(']\n",
    ],
)
def test_errors_never_show_a_dsn_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dsn: str, invalid: str
) -> None:
    monkeypatch.setenv("CDC_SOURCE_DSN", dsn)
    monkeypatch.setenv("CDC_SINK_DSN", dsn)
    message = load_error(write_config(tmp_path, USERS + invalid))
    assert PASSWORD not in message


def test_error_in_the_dsn_line_itself_does_not_show_the_password(tmp_path: Path) -> None:
    content = f'[source]\ndsn = "postgresql://cdc:{PASSWORD}@db/app\n' + USERS
    message = load_error(write_config(tmp_path, content))
    assert "not valid TOML" in message
    assert PASSWORD not in message


# -- where the file comes from ----------------------------------------------------------------


def test_config_path_prefers_the_explicit_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_CONFIG", "/etc/from-env.toml")
    assert config_path("/etc/explicit.toml") == Path("/etc/explicit.toml")


def test_config_path_uses_cdc_config_without_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_CONFIG", "/etc/from-env.toml")
    assert config_path(None) == Path("/etc/from-env.toml")


def test_config_path_falls_back_to_cdc_toml_in_the_working_directory() -> None:
    assert config_path(None) == DEFAULT_CONFIG_PATH == Path("cdc.toml")


def test_load_settings_reads_cdc_config_and_then_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "env.toml"
    env_file.write_text(SOURCE + '[[tables]]\nname = "env.t"\n', encoding="utf-8")
    (tmp_path / "cdc.toml").write_text(SOURCE + '[[tables]]\nname = "cwd.t"\n', encoding="utf-8")
    explicit = tmp_path / "explicit.toml"
    explicit.write_text(SOURCE + '[[tables]]\nname = "explicit.t"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_settings().tables[0].schema_name == "cwd"
    monkeypatch.setenv("CDC_CONFIG", os.fspath(env_file))
    assert load_settings().tables[0].schema_name == "env"
    assert load_settings(explicit).tables[0].schema_name == "explicit"
