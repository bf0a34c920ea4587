"""Settings: one TOML file, validated by pydantic, every key overridable from the environment
(pydantic-settings).

Where the file comes from: ``--config PATH``, else ``$CDC_CONFIG``, else ``./cdc.toml``. Any
key can be set from the environment as ``CDC_<SECTION>__<KEY>`` (``CDC_BATCH__MAX_ROWS=2000``,
``CDC_METRICS__PORT=9188``; lists and tables as JSON), which wins over the file; the DSNs also
as ``CDC_SOURCE_DSN`` and ``CDC_SINK_DSN``, so that passwords need not live in the file.
Validation errors become one :class:`~cdc.errors.ConfigError` that names the file, the key
(``tables[public.investors].entity_typ``), the problem, the closest valid key for a typo, and
the environment variable when the value came from there.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

from cdc.config_sections import (
    DEFAULT_REDACT_PATTERNS,
    OPERATIONS,
    SEVERITY_LEVELS,
    BatchSettings,
    ContextSettings,
    DaemonSettings,
    MetricsSettings,
    MigrationSettings,
    Operation,
    RedactionSettings,
    Scalar,
    Severity,
    SeverityByOperation,
    SinkSettings,
    SourceSettings,
    StoreSettings,
    TableRules,
    TransitionRule,
    WebSettings,
    split_qualified_name,
)
from cdc.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("cdc.toml")


__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_REDACT_PATTERNS",
    "ENV_NESTED_DELIMITER",
    "ENV_PREFIX",
    "OPERATIONS",
    "SEVERITY_LEVELS",
    "BatchSettings",
    "ContextSettings",
    "DaemonSettings",
    "MetricsSettings",
    "MigrationSettings",
    "Operation",
    "RedactionSettings",
    "Scalar",
    "Settings",
    "Severity",
    "SeverityByOperation",
    "SinkSettings",
    "SourceSettings",
    "StoreSettings",
    "TableRules",
    "TransitionRule",
    "WebSettings",
    "config_path",
    "load_settings",
    "settings_from_mapping",
    "split_qualified_name",
]


# The environment the settings read (settings_from_mapping sets it); empty otherwise, so that
# Settings(...) and Settings.model_validate(...) never read the process's environment by chance.
_ENVIRONMENT: ContextVar[Mapping[str, str]] = ContextVar(
    "cdc_settings_environment", default=MappingProxyType({})
)

ENV_PREFIX = "CDC_"
ENV_NESTED_DELIMITER = "__"
# Older names that stay: the DSNs (deploy files, docs) and the NATS servers as a comma list.
_ENV_ALIASES = {
    "CDC_SOURCE_DSN": "CDC_SOURCE__DSN",
    "CDC_SINK_DSN": "CDC_SINK__DSN",
    "CDC_WEB_DSN": "CDC_WEB__DSN",
}


# The other variables activity-cdc reads by name (the ``CDC_<SECTION>__<KEY>`` form aside):
# a variable a letter or two away from one of these is a typo that would be ignored without a
# word (tests/unit/test_config_env.py checks that every name the code reads is here).
PLAIN_VARIABLES = frozenset(
    {
        "CDC_CONFIG",
        "CDC_FAILPOINTS",
        "CDC_LOG_FORMAT",
        "CDC_NATS_CREDS",
        "CDC_NATS_PASSWORD",
        "CDC_NATS_SERVER",
        "CDC_NATS_SERVERS",
        "CDC_NATS_TOKEN",
        "CDC_NATS_USER",
        "CDC_PG_BINDIR",
        "CDC_PURE_PYTHON",
        "CDC_REDACTION_KEY",
        "CDC_SINK_DSN",
        "CDC_SOURCE_DSN",
        "CDC_STORE_DSN",
        "CDC_WEB_DSN",
        "CDC_WEB_TOKEN",
    }
)


def misspelt_variables(environ: Mapping[str, str], also: frozenset[str] = frozenset()) -> list[str]:
    """One line for each ``CDC_*`` variable (not ``CDC_<SECTION>__<KEY>``) that activity-cdc
    does not read but that is a letter or two away from one it does: ``CDC_SINK_DNS`` for
    ``CDC_SINK_DSN`` would leave the file's DSN, or none, in force. Only near misses: other
    tools' ``CDC_*`` variables, and a ``[redaction] key_env`` of the user's choosing (``also``),
    are no one's typo. A warning, not a refusal, since the name may be someone else's."""
    known = PLAIN_VARIABLES | also
    lines = []
    for variable in sorted(environ):
        name = variable.upper()
        if not name.startswith(ENV_PREFIX) or ENV_NESTED_DELIMITER in name or name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.85)
        if close:
            lines.append(
                f"the environment variable {variable} is not one activity-cdc reads (ignored); "
                f"did you mean {close[0]}?"
            )
    return lines


class _Environment(EnvSettingsSource):
    """``CDC_<SECTION>__<KEY>`` variables of a given mapping (the process's environment, or
    a test's), as pydantic-settings' environment source reads them."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class Settings(BaseSettings):
    """The whole configuration: the TOML file, with every key overridable from the
    environment as ``CDC_<SECTION>__<KEY>`` (``CDC_BATCH__MAX_ROWS=2000``; lists and tables as
    JSON), the environment winning."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_ignore_empty=True,
        case_sensitive=False,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (_Environment(settings_cls, _ENVIRONMENT.get()), init_settings)

    source: SourceSettings = SourceSettings()
    sink: SinkSettings = SinkSettings()
    batch: BatchSettings = BatchSettings()
    redaction: RedactionSettings = RedactionSettings()
    context: ContextSettings = ContextSettings()
    metrics: MetricsSettings = MetricsSettings()
    daemon: DaemonSettings = DaemonSettings()
    store: StoreSettings = StoreSettings()
    migration: MigrationSettings = MigrationSettings()
    web: WebSettings = WebSettings()
    tables: Annotated[tuple[TableRules, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_tables(self) -> Settings:
        seen: set[tuple[str, str]] = set()
        for rules in self.tables:
            key = (rules.schema_name, rules.table_name)
            if key in seen:
                raise ValueError(f"table {rules.name!r} is listed twice")
            seen.add(key)
        if (self.sink.schema_name, self.sink.table_name) in seen:
            raise ValueError(f"the sink table {self.sink.table!r} cannot also be a captured table")
        return self

    @property
    def sink_dsn(self) -> str:
        return self.sink.dsn or self.source.dsn

    def configured_tables(self, name: str) -> list[TableRules]:
        """The rules of the tables called ``name`` (``schema.table``, or a table's own name: one
        per schema that has it); a ConfigError naming the closest configured table when none
        is, so that a typo never reads as "no records"."""
        try:
            schema, table = split_qualified_name(name)
        except ValueError:
            schema, table = None, name
        found = [
            rules
            for rules in self.tables
            if rules.table_name == table and (schema is None or rules.schema_name == schema)
        ]
        if found:
            return found
        names = [rules.name for rules in self.tables]
        close = difflib.get_close_matches(
            name, names + [rules.table_name for rules in self.tables], n=1
        )
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(
            f"unknown table {name!r}: it is not in the config's [[tables]]; {hint}"
            f"configured: {', '.join(names)}"
        )

    @property
    def web_dsn(self) -> str:
        return self.web.dsn or self.sink_dsn

    def rules_for(self, schema: str, table: str) -> TableRules | None:
        for rules in self.tables:
            if rules.schema_name == schema and rules.table_name == table:
                return rules
        return None


def _format_validation_error(
    origin: str, exc: ValidationError, data: Mapping[str, Any], env: Mapping[str, str]
) -> str:
    problems = []
    errors = exc.errors()
    for error in errors:
        loc = error["loc"]
        if error["type"] == "too_short" and any(
            len(other["loc"]) > len(loc) and other["loc"][: len(loc)] == loc for other in errors
        ):
            continue  # the list is "too short" only because an entry of it is invalid
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden" and loc:
            close = difflib.get_close_matches(str(loc[-1]), _keys_at(loc[:-1]), n=1)
            message = "unknown key" + (f"; did you mean {close[0]}?" if close else "")
        variable = _env_name(loc)
        if variable in env or variable.lower() in {k.lower() for k in env}:
            message += f" (from the environment: {variable})"
        problems.append(f"{_where(loc, data)}: {message}")
    return f"{origin}: invalid configuration: " + "; ".join(problems)


def _not_json(environ: Mapping[str, str]) -> str:
    problems = []
    for variable, value in environ.items():
        if ENV_NESTED_DELIMITER not in variable:
            continue
        try:
            json.loads(value)
        except ValueError:
            parts = variable[len(ENV_PREFIX) :].lower().split(ENV_NESTED_DELIMITER)
            if len(parts) == 2 and parts[1] in _keys_at((parts[0],)):
                field = _model_in(Settings.model_fields[parts[0]].annotation).model_fields[parts[1]]
                if not _is_scalar(field.annotation):
                    problems.append(
                        f"{'.'.join(parts)}: a list or a table in the environment is JSON, "
                        f'e.g. ["a", "b"] (from the environment: {variable})'
                    )
    return "; ".join(problems) or "an environment variable CDC_... is not valid JSON"


def _is_scalar(annotation: Any) -> bool:
    args = typing.get_args(annotation)
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType, Literal):
        return (
            all(_is_scalar(arg) for arg in args)
            if typing.get_origin(annotation) is not Literal
            else True
        )
    if typing.get_origin(annotation) is Annotated:
        return _is_scalar(args[0])
    return annotation in (str, int, float, bool, type(None))


def _where(loc: tuple[int | str, ...], data: Mapping[str, Any]) -> str:
    """``source.slot``; in a table, by its name and then its position in the file:
    ``tables[public.investors].entity_typ (tables.0.entity_typ)``."""
    dotted = ".".join(str(part) for part in loc) or "(top level)"
    if loc[:1] == ("tables",) and len(loc) > 1 and isinstance(loc[1], int):
        tables = data.get("tables")
        entry = tables[loc[1]] if isinstance(tables, list) and loc[1] < len(tables) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[2:])
            return f"tables[{name}]{rest} ({dotted})"
    return dotted


def _env_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc if not isinstance(part, int)]
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(parts).upper()


def _keys_at(loc: tuple[int | str, ...]) -> list[str]:
    """The valid keys of the section at ``loc`` (for suggesting the closest to a typo)."""
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _model_in(field.annotation)
    if not _is_model(model):
        return []
    keys = [field.alias or name for name, field in model.model_fields.items()]
    return keys + (["actor_column"] if model is TableRules else [])


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _model_in(annotation: Any) -> Any:
    if _is_model(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def settings_from_mapping(
    data: Mapping[str, Any],
    *,
    origin: str = "<config>",
    env: Mapping[str, str] | None = None,
    require_source: bool = True,
) -> Settings:
    """Validate a parsed config (a TOML document as a dict) with the environment's overrides
    (``CDC_<SECTION>__<KEY>``; ``env``: instead of the process's environment)."""
    environ = {
        key: value
        for key, value in (os.environ if env is None else env).items()
        if key.upper().startswith(ENV_PREFIX)
    }
    for old, new in _ENV_ALIASES.items():
        if environ.get(old) and not environ.get(new):
            environ[new] = environ[old]
    if environ.get("CDC_NATS_SERVERS") and not environ.get("CDC_SINK__SERVERS"):
        servers = [url.strip() for url in environ["CDC_NATS_SERVERS"].split(",") if url.strip()]
        environ["CDC_SINK__SERVERS"] = json.dumps(servers)
    _check_sections(origin, environ)
    for section, value in data.items():
        overridden = f"{ENV_PREFIX}{section}{ENV_NESTED_DELIMITER}".upper()
        if not isinstance(value, dict) and any(k.upper().startswith(overridden) for k in environ):
            # the environment's keys would silently replace what the file says
            raise ConfigError(f"{origin}: invalid configuration: [{section}] must be a table")
    token = _ENVIRONMENT.set(environ)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(origin, exc, data, environ)) from None
    except SettingsError:  # a list or a table from the environment that is not JSON
        raise ConfigError(f"{origin}: invalid configuration: " + _not_json(environ)) from None
    finally:
        _ENVIRONMENT.reset(token)
    if settings.sink.kind == "jetstream" and not settings.sink.servers:
        raise ConfigError(
            f'{origin}: invalid configuration: sink.servers: [sink] kind = "jetstream" needs '
            'the NATS servers; set [sink] servers = ["nats://host:4222", ...] or '
            "CDC_NATS_SERVERS"
        )
    if require_source and not settings.source.dsn:
        raise ConfigError(
            f"{origin}: invalid configuration: source.dsn: no source database given; "
            "set [source] dsn in the file or the CDC_SOURCE_DSN environment variable"
        )
    return settings


def _check_sections(origin: str, environ: Mapping[str, str]) -> None:
    """A ``CDC_<SECTION>__<KEY>`` variable whose section does not exist is a typo that would
    otherwise be ignored without a word (the file's value, or the default, would apply): an
    unknown key of a known section is refused by validation already."""
    sections = list(Settings.model_fields)
    for variable in environ:
        name = variable[len(ENV_PREFIX) :]
        if ENV_NESTED_DELIMITER not in name:
            continue
        section = name.split(ENV_NESTED_DELIMITER, 1)[0].lower()
        if section not in sections:
            close = difflib.get_close_matches(section, sections, n=1)
            hint = (
                f"; did you mean {ENV_PREFIX}{close[0].upper()}{ENV_NESTED_DELIMITER}...?"
                if close
                else ""
            )
            raise ConfigError(
                f"{origin}: invalid configuration: {section}: no such section{hint} "
                f"(from the environment: {variable})"
            )


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get("CDC_CONFIG"):
        return Path(os.environ["CDC_CONFIG"])
    return DEFAULT_CONFIG_PATH


def load_settings(
    path: str | os.PathLike[str] | None = None, *, require_source: bool = True
) -> Settings:
    """Read and validate the config file; every failure is a ConfigError naming the file.
    ``require_source=False``: a process that reads no source (``cdc ingest``)."""
    file = config_path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: config file not found; pass --config PATH, set CDC_CONFIG, "
            "or start from examples/platform.toml"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    settings = settings_from_mapping(data, origin=str(file), require_source=require_source)
    for line in misspelt_variables(os.environ, frozenset({settings.redaction.key_env.upper()})):
        logging.getLogger("cdc.config").warning(line)
    return settings
