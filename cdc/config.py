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
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

from cdc.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("cdc.toml")

Operation = Literal["insert", "update", "delete", "truncate"]
OPERATIONS: tuple[Operation, ...] = ("insert", "update", "delete", "truncate")
Severity = Literal["debug", "info", "notice", "warning", "error", "critical"]
SEVERITY_LEVELS: tuple[str, ...] = ("debug", "info", "notice", "warning", "error", "critical")

# Column names that are redacted on every table unless the table says otherwise. Matched
# case-insensitively against the whole column name.
DEFAULT_REDACT_PATTERNS: tuple[str, ...] = (
    r".*password.*",
    r".*passwd.*",
    r".*secret.*",
    r".*token_hash.*",
    r".*api_?key.*",
    r".*private_key.*",
    r".*otp_seed.*",
)

_IDENT_PART = r'(?:[^."\x00]+|"(?:[^"\x00]|"")+")'
_QUALIFIED = re.compile(rf"^({_IDENT_PART})\.({_IDENT_PART})$")


def split_qualified_name(name: str) -> tuple[str, str]:
    """``schema.table`` → (schema, table). Parts may be double-quoted to hold dots or quotes."""
    match = _QUALIFIED.match(name)
    if not match:
        raise ValueError(
            f"{name!r} is not a qualified name; write it as schema.table "
            '(double-quote a part that holds a dot: "my.schema".table)'
        )
    parts = []
    for part in match.groups():
        if part.startswith('"'):
            part = part[1:-1].replace('""', '"')
        parts.append(part)
    return parts[0], parts[1]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSettings(_Strict):
    dsn: str = ""
    slot: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,63}$")] = "activity_cdc"
    publication: Annotated[str, Field(min_length=1, max_length=63)] = "activity_cdc"
    status_interval_ms: Annotated[int, Field(ge=100, le=600_000)] = 10_000
    # The walsender streams a transaction to us (we spill it to disk) once decoding it takes
    # more than this; smaller ones are held in memory until their commit. Bounds our memory.
    decoding_work_mem: Annotated[str, Field(pattern=r"^[1-9][0-9]*(kB|MB|GB)$")] = "8MB"
    # PostgreSQL 17+: setup creates the slot with failover = true, so that a standby with
    # sync_replication_slots keeps a copy and the daemon resumes on it after a failover
    # (docs/operations.md "Failover"). Unset: true on 17 and later; true on 15/16 is refused.
    failover_slot: bool | None = None


class SinkSettings(_Strict):
    # "postgres": records into the activity store (COPY + checkpoint in one transaction);
    # "jetstream": records published to a NATS JetStream stream (cdc.pipeline.jetstream_sink), from
    # which `cdc ingest` writes stores (docs/scale-out.md).
    kind: Literal["postgres", "jetstream"] = "postgres"
    dsn: str = ""  # empty: the source database holds the records too
    table: str = "activity.records"
    # Chain each record's hash to the one before (tamper evidence, ``cdc verify-chain``).
    hash_chain: bool = True
    # A change the sink refuses (a value or a constraint of its row): "stop" the daemon naming
    # it (nothing acknowledged; fix and restart), or park it in <schema>.dead_letters, log an
    # error, and go on ("dead_letter").
    on_refused: Literal["stop", "dead_letter"] = "stop"
    # -- kind = "jetstream" (credentials from the environment: CDC_NATS_CREDS, a creds file,
    # or CDC_NATS_USER + CDC_NATS_PASSWORD, or CDC_NATS_TOKEN; servers also CDC_NATS_SERVERS)
    servers: tuple[str, ...] = ()
    stream: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "ACTIVITY"
    # The subjects are <subject_prefix>.<source_name>.<schema>.<table>.<operation>.
    subject_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")] = "activity"
    # This source's token in the subjects (default: the source database's name); unique per
    # source database feeding the stream.
    source_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    replicas: Annotated[int, Field(ge=1, le=5)] = 3
    # JetStream drops a message whose Nats-Msg-Id it stored within this window (the restart
    # after a crash republishes from the acknowledged position); the key-value checkpoint
    # covers restarts after it.
    duplicate_window_s: Annotated[int, Field(ge=1, le=86_400)] = 300
    # Messages older than this leave the stream (0: kept until removed by hand).
    max_age_days: Annotated[float, Field(ge=0)] = 7.0
    bucket: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "activity_cdc"
    # Flow control: publishes awaiting their PubAck at most; a batch waits for all of them.
    max_pending_publishes: Annotated[int, Field(ge=1, le=100_000)] = 4000
    publish_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0

    @field_validator("table")
    @classmethod
    def _qualified(cls, value: str) -> str:
        split_qualified_name(value)
        return value

    @field_validator("servers")
    @classmethod
    def _nats_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not re.match(r"^(nats|tls)://[^\s/@]+$", url):
                shown = "a URL with credentials" if "@" in url else repr(url)  # never echo them
                raise ValueError(
                    f"{shown} is not a NATS server URL (nats://host:port; credentials go in "
                    "CDC_NATS_USER/CDC_NATS_PASSWORD, CDC_NATS_TOKEN or CDC_NATS_CREDS)"
                )
        return value

    @property
    def schema_name(self) -> str:
        return split_qualified_name(self.table)[0]

    @property
    def table_name(self) -> str:
        return split_qualified_name(self.table)[1]


class BatchSettings(_Strict):
    max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 5000
    max_delay_ms: Annotated[int, Field(ge=0, le=3_600_000)] = 500
    # Also write a batch as soon as the stream has nothing more to read and the sink has no
    # batch in flight, keeping the sink busy at most half of the time with these early
    # writes (low latency when quiet, large batches under load), and at most one such batch
    # per idle_flush_interval_ms; false: only max_rows and max_delay_ms.
    flush_when_idle: bool = True
    idle_flush_interval_ms: Annotated[int, Field(ge=0, le=3_600_000)] = 0


class SeverityByOperation(_Strict):
    insert: Severity = "info"
    update: Severity = "info"
    delete: Severity = "warning"
    truncate: Severity = "critical"


Scalar = str | int | float | bool


class TransitionRule(_Strict):
    """A business action named by a column's transition, e.g. ``status: pending → approved``
    on approvals gives ``approval.approved``. ``from``/``to`` compare with the column's JSON
    value (so ``to = true`` matches a boolean, ``to = 5`` a number); leave one out for "any".
    On an insert only ``to`` is compared (there is no old value)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    column: str
    from_value: Scalar | None = Field(default=None, alias="from")
    to_value: Scalar | None = Field(default=None, alias="to")
    operations: tuple[Literal["insert", "update"], ...] = ("update",)
    action: str
    severity: Severity | None = None
    category: str | None = None

    @model_validator(mode="after")
    def _something_to_match(self) -> TransitionRule:
        if self.from_value is None and self.to_value is None:
            raise ValueError(f"rule for column {self.column!r} needs `from`, `to` or both")
        return self


class TableRules(_Strict):
    """How the row changes of one table become activity records."""

    name: str
    entity_type: str | None = None  # default: the table name
    category: str = "data_change"
    action: str = "{entity_type}.{operation}"
    severity: SeverityByOperation = SeverityByOperation()
    # The first of these columns that holds a value names the actor (new row, else old row).
    actor_columns: tuple[str, ...] = ()
    ignore_columns: tuple[str, ...] = ()
    redact_columns: tuple[str, ...] = ()
    # First matching rule wins; a change that matches none keeps `action` above.
    rules: tuple[TransitionRule, ...] = ()
    # Publish only these columns (a publication column list, PostgreSQL 15+): the others never
    # leave the server. None: every column.
    columns: tuple[str, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _actor_column_alias(cls, data: Any) -> Any:
        # `actor_column = "updated_by"` reads better for the common single-column case.
        if isinstance(data, dict) and "actor_column" in data:
            data = dict(data)
            single = data.pop("actor_column")
            if "actor_columns" in data:
                raise ValueError("give actor_column or actor_columns, not both")
            data["actor_columns"] = [single] if isinstance(single, str) else single
        return data

    @field_validator("name")
    @classmethod
    def _qualified(cls, value: str) -> str:
        split_qualified_name(value)
        return value

    @field_validator("action")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            value.format(entity_type="x", operation="x", table="x", schema="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"action template {value!r} is invalid ({exc}); it may use "
                "{entity_type}, {operation}, {table} and {schema}"
            ) from None
        return value

    @property
    def schema_name(self) -> str:
        return split_qualified_name(self.name)[0]

    @property
    def table_name(self) -> str:
        return split_qualified_name(self.name)[1]


class RedactionSettings(_Strict):
    patterns: tuple[str, ...] = DEFAULT_REDACT_PATTERNS
    marker: str = "[redacted]"
    # "marker": the value becomes `marker`; "hmac": a keyed hash (HMAC-SHA256 with the key in
    # the environment variable `key_env`), so equal secrets stay comparable without being seen.
    mode: Literal["marker", "hmac"] = "marker"
    key_env: str = "CDC_REDACTION_KEY"

    @field_validator("patterns")
    @classmethod
    def _regexes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"redaction pattern {pattern!r} is not a regex: {exc}") from None
        return value


class ContextSettings(_Strict):
    """Transaction context: a transactional logical message with this prefix and a JSON object
    body applies to every change of its transaction (sql/migrations: activity.set_context)."""

    prefix: str = "cdc.context"
    # The first of these keys present in the context names the actor (a JWT's `sub`, ...).
    actor_keys: tuple[str, ...] = ("actor_id", "sub", "user_id")
    # Trusted roles that may call activity.set_context / log / log_now (granted by `cdc setup`).
    allowed_roles: tuple[str, ...] = ()
    # PostgREST/Supabase request roles (e.g. "authenticated"): may call only
    # activity.pre_request(), which takes the actor from the verified JWT claims, so an API
    # user cannot name another actor.
    request_roles: tuple[str, ...] = ()
    # Application activities (activity.log / activity.log_now): messages with this prefix.
    application_prefix: str = "cdc.activity"


class MetricsSettings(_Strict):
    """Prometheus metrics, /healthz and /readyz over HTTP (cdc.metrics): on by default, on
    the loopback interface only; port 0: off. A port in use is retried, not fatal."""

    port: Annotated[int, Field(ge=0, le=65535)] = 9187
    bind: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    ready_max_lag_seconds: Annotated[float, Field(gt=0)] = 60.0


class DaemonSettings(_Strict):
    """How ``cdc run`` keeps running for years (cdc.service.supervisor, cdc.control.heartbeat,
    cdc.control.slot_watch):
    reconnects after a lost connection, waits as a standby while another daemon holds the
    slot, emits heartbeats, and warns before the slot's WAL reaches max_slot_wal_keep_size.
    Read at start; a SIGHUP does not change them."""

    # A lost connection: wait a random time in [0, min(max, initial * 2**attempt)] (full
    # jitter), then reconnect; after a run that lasted reconnect_reset_after_s, start over.
    reconnect_initial_s: Annotated[float, Field(gt=0, le=3600)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    reconnect_reset_after_s: Annotated[float, Field(ge=0)] = 60.0
    # The slot is active for another process: try again this often (hot standby).
    standby_retry_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    # pg_logical_emit_message('cdc.heartbeat') this often, on its own connection; 0: off.
    heartbeat_interval_s: Annotated[float, Field(ge=0, le=86_400)] = 0.0
    # Check the slot's retained WAL this often; 0: off.
    slot_watch_interval_s: Annotated[float, Field(ge=0, le=86_400)] = 30.0
    # Warn when the slot retains this fraction of max_slot_wal_keep_size (or wal_status is
    # extended/unreserved).
    slot_warn_retained_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.8

    @model_validator(mode="after")
    def _backoff_bounds(self) -> DaemonSettings:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError(
                f"reconnect_max_s ({self.reconnect_max_s:g}) is below reconnect_initial_s "
                f"({self.reconnect_initial_s:g})"
            )
        return self


class StoreSettings(_Strict):
    """Partitions, retention and rollups of the activity store (``cdc partitions``)."""

    partitions_ahead: Annotated[int, Field(ge=0, le=120)] = 3  # months after the current one
    retention_months: Annotated[int, Field(ge=1)] | None = None  # None: records are kept
    minute_rollups_days: Annotated[int, Field(ge=1)] = 14  # per-hour rollups follow retention
    # Full-text search over the row values too (old, new, changes), not only the summary:
    # `cdc setup` creates that GIN index, which costs ~4x the server CPU of writing a record.
    search_values: bool = False


class WebSettings(_Strict):
    """``cdc serve``: the monitor and dashboard pages and their JSON API (cdc/web).

    The server reads through ``dsn`` (``CDC_WEB_DSN`` overrides it; empty: the sink's DSN),
    best as the read-only role of ``cdc setup --print-role-sql --reader``. Every route asks
    for the token given in ``CDC_WEB_TOKEN``, or one whose hash is ``token_hash`` (``cdc
    serve --hash-token`` prints it); without either the server starts only on a loopback
    address, and then with a token it makes up and prints."""

    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    dsn: str = ""
    token_hash: (
        Annotated[str, Field(pattern=r"^pbkdf2_sha256\$[0-9]+\$[0-9a-f]+\$[0-9a-f]{64}$")] | None
    ) = None
    # Connections of the read pool; each open live view holds one while it is open.
    pool_max_size: Annotated[int, Field(ge=2, le=100)] = 10
    # How often a live view asks the store for records written since the last one it saw.
    live_poll_ms: Annotated[int, Field(ge=50, le=60_000)] = 250
    # Live views open at once; one more is refused (503, Retry-After) so that the views never
    # take every pool connection from the pages. None: half the pool.
    live_max_views: Annotated[int, Field(ge=1)] | None = None
    # A signed-in page stays signed in this long.
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0

    @model_validator(mode="after")
    def _room_for_the_pages(self) -> WebSettings:
        if self.live_max_views is not None and self.live_max_views >= self.pool_max_size:
            raise ValueError(
                f"live_max_views ({self.live_max_views}) must be below pool_max_size "
                f"({self.pool_max_size}): each live view holds a connection of the pool"
            )
        return self

    @property
    def live_views_allowed(self) -> int:
        """How many live views may be open at once."""
        return self.live_max_views or max(1, self.pool_max_size // 2)


class MigrationSettings(_Strict):
    """Moving tables from audit triggers to CDC (``cdc triggers ...``, ``cdc verify``;
    docs/migration.md).

    ``audit_functions`` are glob patterns (``fnmatch``, case-sensitive) matched against the
    name of a trigger's function, or against ``schema.name`` when the pattern holds a dot; a
    trigger whose function matches is an audit trigger, every other trigger is never touched.
    """

    audit_functions: Annotated[tuple[str, ...], Field(min_length=1)] = ("audit_*",)
    # The legacy audit log and its columns (the demo's layout: sql/demo/legacy_audit.sql).
    legacy_table: str = "public.audit_log"
    legacy_table_name_column: str = "table_name"  # the table's bare name (TG_TABLE_NAME)
    legacy_schema_column: str | None = None  # None: table names are unique among [[tables]]
    legacy_operation_column: str = "operation"  # INSERT/UPDATE/DELETE; others are derived rows
    legacy_txid_column: str = "txid"  # txid_current(): 64-bit, epoch in the high bits
    legacy_old_column: str = "old_data"  # to_jsonb(OLD)
    legacy_new_column: str = "new_data"  # to_jsonb(NEW)
    legacy_time_column: str = "changed_at"  # now(): the transaction's start
    legacy_order_column: str = "id"  # order of the rows within a transaction
    # Phases: { 1 = ["public.notifications"], 2 = [...] }; cutover --phase N takes phase N.
    phases: dict[Annotated[int, Field(ge=0)], tuple[str, ...]] = {}
    # Cutover refuses unless the daemon acknowledged within this many seconds ...
    max_ack_age_seconds: Annotated[float, Field(gt=0)] = 120.0
    # ... and the slot's unconfirmed WAL is at most this many bytes.
    max_lag_bytes: Annotated[int, Field(ge=0)] = 64 * 1024 * 1024
    # Each table's switch waits at most this long for its lock, then retries with backoff.
    lock_timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 500
    lock_attempts: Annotated[int, Field(ge=1, le=1000)] = 10
    lock_backoff_max_ms: Annotated[int, Field(ge=0)] = 5000
    # `cdc triggers drop` only drops triggers that have been off (on CDC) this long.
    soak_hours: Annotated[float, Field(ge=0)] = 168.0
    # `cdc verify` waits this long for the daemon to confirm the stream up to its snapshot.
    verify_wait_seconds: Annotated[float, Field(ge=0)] = 60.0

    @field_validator("legacy_table")
    @classmethod
    def _qualified_table(cls, value: str) -> str:
        split_qualified_name(value)
        return value

    @field_validator("phases")
    @classmethod
    def _qualified_phase_tables(
        cls, value: dict[int, tuple[str, ...]]
    ) -> dict[int, tuple[str, ...]]:
        seen: dict[str, int] = {}
        for phase, names in value.items():
            for name in names:
                split_qualified_name(name)
                if name in seen:
                    raise ValueError(f"table {name!r} is in phase {seen[name]} and phase {phase}")
                seen[name] = phase
        return value

    @property
    def legacy_schema_name(self) -> str:
        return split_qualified_name(self.legacy_table)[0]

    @property
    def legacy_table_name(self) -> str:
        return split_qualified_name(self.legacy_table)[1]


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
    return settings_from_mapping(data, origin=str(file), require_source=require_source)
