"""Every setting from the environment (``CDC_<SECTION>__<KEY>``, pydantic-settings), and config
errors that name the table, the closest valid key and the environment variable."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import cdc
from cdc.config import (
    PLAIN_VARIABLES,
    Settings,
    TableRules,
    load_settings,
    misspelt_variables,
    settings_from_mapping,
)
from cdc.errors import ConfigError

FILE: dict[str, Any] = {
    "source": {"dsn": "host=db"},
    "batch": {"max_rows": 100},
    "tables": [{"name": "public.investors"}],
}
NOT_A_VALUE = "@@ not a value @@"


def sections() -> list[tuple[str, str, Any]]:
    """(section, key, field) of every key of every [section] of the config."""
    found = []
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            found += [(section, key, sub) for key, sub in model.model_fields.items()]
    return found


def test_the_environment_wins_over_the_file() -> None:
    settings = settings_from_mapping(
        FILE,
        env={
            "CDC_BATCH__MAX_ROWS": "2000",
            "CDC_METRICS__PORT": "9188",
            "cdc_daemon__heartbeat_interval_s": "5",  # names are not case-sensitive
            "CDC_REDACTION__PATTERNS": '["pin", "iban"]',
            "CDC_SOURCE__SLOT": "second",
        },
    )
    assert settings.batch.max_rows == 2000
    assert settings.metrics.port == 9188
    assert settings.daemon.heartbeat_interval_s == 5
    assert settings.redaction.patterns == ("pin", "iban")
    assert settings.source.slot == "second" and settings.source.dsn == "host=db"
    assert settings_from_mapping(FILE, env={}).batch.max_rows == 100


def test_the_dsn_variables_keep_their_short_names() -> None:
    settings = settings_from_mapping(
        FILE, env={"CDC_SOURCE_DSN": "host=a", "CDC_SINK_DSN": "host=b"}
    )
    assert (settings.source.dsn, settings.sink.dsn) == ("host=a", "host=b")
    both = {"CDC_SOURCE_DSN": "host=a", "CDC_SOURCE__DSN": "host=c"}
    assert settings_from_mapping(FILE, env=both).source.dsn == "host=c"


def test_variables_that_are_not_settings_are_left_alone() -> None:
    env = {"CDC_CONFIG": "x.toml", "CDC_LOG_FORMAT": "json", "CDC_REDACTION_KEY": "k",
           "CDC_FAILPOINTS": "", "PATH": "/bin"}  # fmt: skip
    assert settings_from_mapping(FILE, env=env).batch.max_rows == 100


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("CDC_SORCE__DSN", "sorce: no such section; did you mean CDC_SOURCE__...?"),
        ("CDC_BATCHES__MAX_ROWS", "batches: no such section; did you mean CDC_BATCH__...?"),
        ("cdc_metric__port", "metric: no such section; did you mean CDC_METRICS__...?"),
        ("CDC_QQ__X", "qq: no such section (from the environment"),
    ],
)
def test_a_variable_of_a_section_that_does_not_exist_is_refused_not_ignored(
    variable: str, message: str
) -> None:
    # ignored, the file's value (or the default) would apply without a word
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        settings_from_mapping(FILE, env={variable: "9188"})
    assert str(refused.value).endswith(f"(from the environment: {variable})")


@pytest.mark.parametrize(("section", "key"), [(s, k) for s, k, _ in sections()])
def test_every_key_of_every_section_is_read_from_the_environment(section: str, key: str) -> None:
    variable = f"CDC_{section}__{key}".upper()
    try:
        settings = settings_from_mapping(FILE, env={variable: NOT_A_VALUE})
    except ConfigError as exc:  # the value was read, and refused by that key's rules
        assert f"{section}.{key}" in str(exc) and f"(from the environment: {variable})" in str(exc)
    else:  # a free text key took the value
        assert getattr(getattr(settings, section), key) == NOT_A_VALUE


def test_an_unknown_key_names_the_table_and_the_closest_valid_key() -> None:
    data = {
        **FILE,
        "tables": [{"name": "public.users"}, {"name": "public.investors", "entity_typ": "x"}],
    }
    with pytest.raises(ConfigError) as error:
        settings_from_mapping(data, origin="cdc.toml", env={})
    assert str(error.value) == (
        "cdc.toml: invalid configuration: tables[public.investors].entity_typ "
        "(tables.1.entity_typ): unknown key; did you mean entity_type?"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"batch": {"max_rowz": 1}}, "batch.max_rowz: unknown key; did you mean max_rows?"),
        ({"sourcee": {}}, "sourcee: unknown key; did you mean source?"),
        ({"batch": {"zzz": 1}}, "batch.zzz: unknown key"),
        ({"tables": [{"name": "public.t", "severity": {"updat": "info"}}]},
         "tables[public.t].severity.updat (tables.0.severity.updat): unknown key; did you mean "
         "update?"),
        ({"tables": [{"name": "public.t", "rules": [{"column": "s", "to": 1, "action": "a",
                                                     "fro": 0}]}]},
         "tables[public.t].rules[0].fro (tables.0.rules.0.fro): unknown key; did you mean from?"),
        ({"tables": [{"name": "public.t", "actor_colum": "a"}]},
         "tables[public.t].actor_colum (tables.0.actor_colum): unknown key; did you mean "
         "actor_column?"),
    ],
)  # fmt: skip
def test_typos_get_the_closest_valid_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings_from_mapping({**FILE, **data}, origin="f", env={})
    assert str(error.value) == f"f: invalid configuration: {message}"


def test_a_bad_value_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as error:
        settings_from_mapping(FILE, origin="f", env={"CDC_BATCH__MAX_ROWS": "0"})
    assert str(error.value) == (
        "f: invalid configuration: batch.max_rows: Input should be greater than or equal to 1 "
        "(from the environment: CDC_BATCH__MAX_ROWS)"
    )
    with pytest.raises(ConfigError, match="CDC_REDACTION__PATTERNS"):
        settings_from_mapping(FILE, origin="f", env={"CDC_REDACTION__PATTERNS": "[not json"})


def test_table_rules_keep_their_alias() -> None:
    assert "actor_column" not in TableRules.model_fields  # an alias, suggested all the same


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("CDC_SINK_DNS", "CDC_SINK_DSN"),
        ("CDC_SOURCE_DNS", "CDC_SOURCE_DSN"),
        ("cdc_web_tokn", "CDC_WEB_TOKEN"),
        ("CDC_NATS_SERVRS", "CDC_NATS_SERVERS"),
    ],
)
def test_a_near_miss_of_a_plain_variable_is_named_with_what_was_meant(
    variable: str, meant: str
) -> None:
    # CDC_SINK_DNS would leave the file's DSN (or none) in force without a word
    lines = misspelt_variables({variable: "host=a", "PATH": "/bin"})
    assert lines == [
        f"the environment variable {variable} is not one activity-cdc reads (ignored); "
        f"did you mean {meant}?"
    ]


def test_other_tools_variables_and_a_chosen_key_variable_are_no_ones_typo() -> None:
    env = {"CDC_SOURCE_DSN": "host=a", "CDC_SINK__BATCH": "1", "CDC_PIPELINE_ID": "x",
           "CDC_KAFKA_BROKERS": "k:9092", "CDC_REDACTION_KEY2": "k", "CDC_": ""}  # fmt: skip
    assert misspelt_variables(env, frozenset({"CDC_REDACTION_KEY2"})) == []
    assert misspelt_variables({"CDC_REDACTION_KEY2": "k"}) != []  # unless it is chosen


def test_every_plain_variable_the_code_reads_is_known() -> None:
    """PLAIN_VARIABLES must not rot: each ``"CDC_..."`` name in cdc/ is in it (or a section's)."""
    root = Path(cdc.__file__).parent
    named = {
        match
        for path in root.rglob("*.py")
        for match in re.findall(r"[\"'](CDC_[A-Z_]+)[\"']", path.read_text(encoding="utf-8"))
    }
    plain = {name for name in named if "__" not in name and name != "CDC_"}
    assert plain and plain <= PLAIN_VARIABLES, plain - PLAIN_VARIABLES


def test_loading_the_config_warns_of_a_near_miss_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "cdc.toml"
    config.write_text('[source]\ndsn = "host=a"\n\n[[tables]]\nname = "public.users"\n')
    monkeypatch.setenv("CDC_SINK_DNS", "host=secret-elsewhere password=hunter2")
    with caplog.at_level("WARNING", logger="cdc.config"):
        settings = load_settings(config)
    assert settings.sink.dsn != "host=secret-elsewhere password=hunter2"  # ignored, as before
    assert [r.getMessage() for r in caplog.records] == [
        "the environment variable CDC_SINK_DNS is not one activity-cdc reads (ignored); "
        "did you mean CDC_SINK_DSN?"
    ]
    assert "hunter2" not in caplog.text
