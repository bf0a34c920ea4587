"""``cdc init``: a starting config written from the source database's catalog.

Installed users have no ``examples/`` folder; this proposes one ``[[tables]]`` entry per table
that has a primary key (the entity id), with the columns that look like the acting user as
``actor_columns`` and the columns that look sensitive, beyond what the default ``[redaction]``
patterns already catch, as ``redact_columns``. Tables without a primary key are listed as
comments: their records would have no entity id. The result is a text to read and edit, and
it is validated as a config before it is written. The DSN is written without its password.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cdc.config import DEFAULT_REDACT_PATTERNS, settings_from_mapping
from cdc.connect import connect
from cdc.errors import ConfigError
from cdc.sqlfiles import sql_text

# Who changed a row, most specific first: the first of these a table has leads actor_columns.
ACTOR_COLUMNS = (
    "updated_by", "modified_by", "changed_by", "last_modified_by", "performed_by",
    "created_by", "actor_id", "user_id", "editor_id", "operator_id",
)  # fmt: skip
# Sensitive-looking columns the default [redaction] patterns miss (matched on the whole name).
SENSITIVE = re.compile(
    r"(?i)^(.*_)?(ssn|social_security(_number)?|tax_id|tin|national_id|passport(_number)?|"
    r"iban|bank_account(_number)?|account_number|card_number|pan|cvv|cvc|pin|pin_code|"
    r"date_of_birth|dob|totp_secret|recovery_codes?|security_answer)(_.*)?$"
)
_DEFAULT_REDACTED = [re.compile(pattern, re.I) for pattern in DEFAULT_REDACT_PATTERNS]


@dataclass(frozen=True)
class CatalogTable:
    schema_name: str
    table_name: str
    primary_key: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{_ident(self.schema_name)}.{_ident(self.table_name)}"


def read_catalog(dsn: str, *, store_schema: str = "activity") -> list[CatalogTable]:
    """The source's tables (see sql/init_catalog.sql)."""
    with connect(dsn) as conn:
        rows = conn.execute(sql_text("init_catalog.sql"), {"exclude_schema": store_schema})
        return [
            CatalogTable(schema, table, tuple(key or ()), tuple(columns or ()))
            for schema, table, key, columns in rows.fetchall()
        ]


def select_tables(tables: Sequence[CatalogTable], patterns: Sequence[str]) -> list[CatalogTable]:
    """The tables matching any of ``patterns`` (``schema.table`` or ``table``, globs allowed);
    every pattern must match something. No patterns: every table."""
    if not patterns:
        return list(tables)
    chosen = []
    for pattern in patterns:
        matched = [
            table
            for table in tables
            if fnmatch.fnmatchcase(f"{table.schema_name}.{table.table_name}", pattern)
            or fnmatch.fnmatchcase(table.table_name, pattern)
        ]
        if not matched:
            raise ConfigError(
                f"--tables {pattern!r} matches no table of the source database; "
                f"it has: {', '.join(t.name for t in tables) or 'no tables'}"
            )
        chosen += [table for table in matched if table not in chosen]
    return sorted(chosen, key=lambda t: (t.schema_name, t.table_name))


def entity_type(table_name: str) -> str:
    """``investors`` → ``investor``, ``companies`` → ``company``: a record's entity type."""
    for plural, singular in (("ies", "y"), ("sses", "ss"), ("xes", "x"), ("ches", "ch")):
        if table_name.endswith(plural) and len(table_name) > len(plural):
            return table_name[: -len(plural)] + singular
    if table_name.endswith("s") and not table_name.endswith("ss") and len(table_name) > 1:
        return table_name[:-1]
    return table_name


def actor_columns(columns: Sequence[str]) -> list[str]:
    return [name for name in ACTOR_COLUMNS if name in columns]


def redact_columns(columns: Sequence[str]) -> list[str]:
    """Sensitive-looking columns that the default patterns would not redact already."""
    return [
        column
        for column in columns
        if SENSITIVE.match(column)
        and not any(pattern.fullmatch(column) for pattern in _DEFAULT_REDACTED)
    ]


def starting_config(dsn: str, tables: Sequence[CatalogTable]) -> str:
    """The config text for ``tables``; validated as a config (a ConfigError if it is not)."""
    keyed = [table for table in tables if table.primary_key]
    if not keyed:
        raise ConfigError(
            "none of the chosen tables has a primary key (the entity id of its records); add "
            "one, or choose other tables with --tables"
        )
    lines = [
        "# activity-cdc: a starting configuration written by `cdc init` from the catalog of",
        f"# {_safe_dsn(dsn)}. Read it, edit it, then run: cdc setup --dry-run; cdc setup;",
        "# cdc check; cdc run. Every key can also come from the environment:",
        "# CDC_<SECTION>__<KEY> (docs/operations.md). Columns named like passwords, secrets,",
        "# tokens and keys are redacted on every table by the default [redaction] patterns;",
        "# redact_columns below adds what looked sensitive beyond them.",
        "",
        "[source]",
        f"dsn = {_toml(_safe_dsn(dsn))}  # the password: CDC_SOURCE_DSN or ~/.pgpass, never here",
        'slot = "activity_cdc"',
        'publication = "activity_cdc"',
        "",
        "[sink]",
        'table = "activity.records"  # in the source database unless [sink] dsn says otherwise',
    ]
    for table in tables:
        lines.append("")
        if not table.primary_key:
            lines += [
                f"# {table.name} has no primary key, so its records would have no entity id;",
                "# add one and run cdc init again, or add it here by hand:",
                "# [[tables]]",
                f"# name = {_toml(table.name)}",
            ]
            continue
        lines += [
            "[[tables]]",
            f"name = {_toml(table.name)}",
            f"entity_type = {_toml(entity_type(table.table_name))}",
            f"# entity id: the primary key ({', '.join(table.primary_key)})",
        ]
        actors = actor_columns(table.columns)
        if actors:
            lines.append(f"actor_columns = {_toml_list(actors)}")
        ignored = [
            c for c in ("updated_at", "modified_at", "last_modified_at") if c in table.columns
        ]
        if ignored:
            lines.append(
                f"ignore_columns = {_toml_list(ignored)}  # an update of only these is no activity"
            )
        sensitive = redact_columns(table.columns)
        if sensitive:
            lines.append(f"redact_columns = {_toml_list(sensitive)}")
    text = "\n".join(lines) + "\n"
    _validate(text)
    return text


def _validate(text: str) -> None:
    import tomllib

    try:
        settings_from_mapping(tomllib.loads(text), origin="cdc init", env={})
    except (ConfigError, tomllib.TOMLDecodeError) as exc:  # a bug: say so, write nothing
        raise ConfigError(
            f"cdc init made a config that does not load ({exc}); please report it"
        ) from None


def _safe_dsn(dsn: str) -> str:
    params: dict[str, Any] = {k: v for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params.pop("password", None)
    return make_conninfo("", **params)


def _ident(name: str) -> str:
    """A part of a qualified name as the config reads it: quoted when it holds a dot or a quote."""
    return f'"{name.replace(chr(34), chr(34) * 2)}"' if "." in name or '"' in name else name


def _toml(value: str) -> str:
    # a JSON string is a TOML basic string: the same escapes (\\, \", \n, \uXXXX)
    return json.dumps(value, ensure_ascii=False)


def _toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_toml(v) for v in values) + "]"
