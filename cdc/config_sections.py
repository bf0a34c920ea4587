"""The sections of the configuration file, one pydantic model each (``[source]``, ``[sink]``,
``[batch]``, ``[[tables]]`` ...): their keys, defaults, units and checks. ``cdc.config`` puts
them together (:class:`~cdc.config.Settings`) and reads the file and the environment."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    # per idle_flush_interval_ms (25 by default: under a steady trickle each sink transaction
    # then carries ~25 ms of changes rather than a few, sharing its fixed costs, for at most
    # 25 ms more latency); false: only max_rows and max_delay_ms.
    flush_when_idle: bool = True
    idle_flush_interval_ms: Annotated[int, Field(ge=0, le=3_600_000)] = 25
    # While the daemon keeps up with the stream it reads it at most once per read_interval_ms:
    # what the walsender sends meanwhile waits in the socket and is read, mapped and written
    # together. Under a steady trickle of small transactions that turns a wake-up of the
    # daemon per source commit (and a sink transaction per few of them) into one per interval,
    # for at most this much more latency; a backlog is read without pause. 0: read each frame
    # as it arrives.
    read_interval_ms: Annotated[int, Field(ge=0, le=60_000)] = 10
    # Under load both intervals grow with the records' rate, from the values above at a
    # quarter of busy_rate records per second up to these at busy_rate: a busy stream is read
    # and written in fewer, larger batches (the daemon and the sink's server pay per wake-up
    # and per sink transaction, on cores the application shares), for latency its targets
    # allow (docs/benchmarks.md: p99 at 5,000 changes/s). The same values as above (or
    # busy_rate = 0): a fixed pacing, as before 2026-12; an interval above set to 0 stays 0.
    busy_read_interval_ms: Annotated[int, Field(ge=0, le=60_000)] = 30
    busy_idle_flush_interval_ms: Annotated[int, Field(ge=0, le=3_600_000)] = 60
    busy_rate: Annotated[int, Field(ge=0, le=10_000_000)] = 4000


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
