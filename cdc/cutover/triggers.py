"""The triggers of the captured tables: which are audit triggers, and the SQL that recreates one.

An *audit trigger* is a trigger whose function matches ``[migration] audit_functions`` (glob
patterns, see :class:`~cdc.config.MigrationSettings`); every other trigger (``updated_at``
maintenance, business rules) is listed but never touched by the migration. A trigger is
*enabled* unless it is ``DISABLE``\\ d (``tgenabled`` ``'D'``): ``ENABLE REPLICA`` and
``ENABLE ALWAYS`` triggers fire in some sessions, so the migration treats them as live too.

The catalog is read with ``search_path = pg_catalog``: ``pg_get_triggerdef``,
``pg_get_functiondef`` and ``oid::regprocedure`` then qualify every name, so the statements
built here recreate the same objects whatever the search_path of the session that runs them.
Trigger and table names are composed with :class:`psycopg.sql.Identifier`; function
signatures are the catalog's own ``regprocedure`` text (already quoted by the server).

:func:`audited_tables` is what the daemon asks at start: the configured tables that still have
an enabled audit trigger (they start in ``shadow`` mode when no cutover was recorded).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings, split_qualified_name
from cdc.errors import ConfigError
from cdc.sqlfiles import sql_text

TableName = tuple[str, str]  # (schema, table)
Statement = sql.SQL | sql.Composed

# pg_trigger.tgtype bits (src/include/catalog/pg_trigger.h)
_ROW, _BEFORE, _INSERT, _DELETE, _UPDATE, _TRUNCATE, _INSTEAD = 1, 2, 4, 8, 16, 32, 64

ENABLED_STATES = {"O": "enabled", "D": "disabled", "R": "replica", "A": "always"}
_ENABLE_CLAUSE = {
    "O": "ENABLE TRIGGER",
    "D": "DISABLE TRIGGER",
    "R": "ENABLE REPLICA TRIGGER",
    "A": "ENABLE ALWAYS TRIGGER",
}


@dataclass(frozen=True)
class FunctionInfo:
    """A trigger function as the catalog describes it: enough to recreate it exactly."""

    oid: int
    signature: str  # oid::regprocedure, schema-qualified: public.audit_amount_change()
    schema: str
    name: str
    definition: str  # pg_get_functiondef: language, SECURITY DEFINER, SET ..., body
    owner: str
    security_definer: bool
    config: tuple[str, ...]  # proconfig: ("search_path=public", ...)
    comment: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "schema": self.schema,
            "name": self.name,
            "definition": self.definition,
            "owner": self.owner,
            "security_definer": self.security_definer,
            "config": list(self.config),
            "comment": self.comment,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FunctionInfo:
        return cls(
            oid=0,
            signature=data["signature"],
            schema=data["schema"],
            name=data["name"],
            definition=data["definition"],
            owner=data["owner"],
            security_definer=bool(data["security_definer"]),
            config=tuple(data["config"]),
            comment=data["comment"],
        )

    def facts(self) -> tuple[Any, ...]:
        """What must be equal for a backup to recreate this function exactly."""
        return (
            self.signature,
            self.definition,
            self.owner,
            self.security_definer,
            self.config,
            self.comment,
        )


@dataclass(frozen=True)
class TriggerInfo:
    schema: str
    table: str
    name: str
    oid: int
    timing: str  # BEFORE | AFTER | INSTEAD OF
    events: tuple[str, ...]  # INSERT, UPDATE OF status, DELETE, TRUNCATE
    level: str  # ROW | STATEMENT
    enabled: str  # tgenabled: O, D, R, A
    constraint: bool
    definition: str  # pg_get_triggerdef
    comment: str | None
    function: FunctionInfo
    audit: bool

    @property
    def table_name(self) -> TableName:
        return (self.schema, self.table)

    @property
    def qualified_table(self) -> str:
        return qualified_name(self.schema, self.table)

    @property
    def is_enabled(self) -> bool:
        return self.enabled != "D"

    @property
    def enabled_state(self) -> str:
        return ENABLED_STATES.get(self.enabled, self.enabled)

    def facts(self) -> tuple[Any, ...]:
        """What must be equal for a backup to recreate this trigger exactly (with its
        function). The enabled state is not among them: switching it is the migration."""
        return (self.schema, self.table, self.name, self.definition, self.comment)

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "table": self.table,
            "name": self.name,
            "timing": self.timing,
            "events": list(self.events),
            "level": self.level,
            "enabled": self.enabled,
            "enabled_state": self.enabled_state,
            "constraint": self.constraint,
            "definition": self.definition,
            "comment": self.comment,
            "audit": self.audit,
            "function": self.function.as_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TriggerInfo:
        return cls(
            schema=data["schema"],
            table=data["table"],
            name=data["name"],
            oid=0,
            timing=data["timing"],
            events=tuple(data["events"]),
            level=data["level"],
            enabled=data["enabled"],
            constraint=bool(data["constraint"]),
            definition=data["definition"],
            comment=data["comment"],
            function=FunctionInfo.from_json(data["function"]),
            audit=bool(data["audit"]),
        )


def qualified_name(schema: str, table: str) -> str:
    """``schema.table`` as the config writes it (parts quoted only when they need it)."""

    def part(name: str) -> str:
        if "." in name or '"' in name:
            return '"' + name.replace('"', '""') + '"'
        return name

    return f"{part(schema)}.{part(table)}"


def qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def is_audit_function(schema: str, name: str, patterns: Iterable[str]) -> bool:
    """Glob match (case-sensitive) on the function's name, or on ``schema.name`` for a
    pattern that holds a dot."""
    for pattern in patterns:
        subject = f"{schema}.{name}" if "." in pattern else name
        if fnmatch.fnmatchcase(subject, pattern):
            return True
    return False


def _timing(tgtype: int) -> str:
    if tgtype & _INSTEAD:
        return "INSTEAD OF"
    return "BEFORE" if tgtype & _BEFORE else "AFTER"


def _events(tgtype: int, update_columns: Sequence[str]) -> tuple[str, ...]:
    events = []
    if tgtype & _INSERT:
        events.append("INSERT")
    if tgtype & _UPDATE:
        events.append("UPDATE OF " + ", ".join(update_columns) if update_columns else "UPDATE")
    if tgtype & _DELETE:
        events.append("DELETE")
    if tgtype & _TRUNCATE:
        events.append("TRUNCATE")
    return tuple(events)


def configured_tables(settings: Settings) -> list[TableName]:
    return [(rules.schema_name, rules.table_name) for rules in settings.tables]


def list_triggers(
    conn: psycopg.Connection[Any], settings: Settings, tables: Sequence[TableName] | None = None
) -> list[TriggerInfo]:
    """Every user trigger on ``tables`` (default: the configured tables), in table and name
    order, each marked audit or not. Leaves the connection's settings as they were."""
    wanted = list(tables) if tables is not None else configured_tables(settings)
    patterns = settings.migration.audit_functions
    with conn.transaction():
        # qualified names in every definition; the caller's search_path is restored after
        row = conn.execute(
            "SELECT current_setting('search_path'), set_config('search_path', 'pg_catalog', true)"
        ).fetchone()
        assert row is not None
        rows = conn.execute(
            sql_text("triggers/inventory.sql"),
            {"schemas": [s for s, _ in wanted], "tables": [t for _, t in wanted]},
        ).fetchall()
        conn.execute("SELECT pg_catalog.set_config('search_path', %s, true)", (row[0],))
    found = []
    for row in rows:
        (
            schema,
            table,
            oid,
            name,
            tgtype,
            enabled,
            update_columns,
            constraint,
            definition,
            comment,
            function_oid,
            signature,
            function_schema,
            function_name,
            function_definition,
            owner,
            security_definer,
            config,
            function_comment,
        ) = row
        function = FunctionInfo(
            oid=int(function_oid),
            signature=signature,
            schema=function_schema,
            name=function_name,
            definition=function_definition,
            owner=owner,
            security_definer=bool(security_definer),
            config=tuple(config),
            comment=function_comment,
        )
        found.append(
            TriggerInfo(
                schema=schema,
                table=table,
                name=name,
                oid=int(oid),
                timing=_timing(tgtype),
                events=_events(tgtype, update_columns),
                level="ROW" if tgtype & _ROW else "STATEMENT",
                enabled=enabled,
                constraint=bool(constraint),
                definition=definition,
                comment=comment,
                function=function,
                audit=is_audit_function(function_schema, function_name, patterns),
            )
        )
    return found


def audit_triggers(
    conn: psycopg.Connection[Any], settings: Settings, tables: Sequence[TableName] | None = None
) -> list[TriggerInfo]:
    return [t for t in list_triggers(conn, settings, tables) if t.audit]


def audited_tables(conn: psycopg.Connection[Any], settings: Settings) -> set[TableName]:
    """The configured tables with at least one enabled audit trigger (``tgenabled`` not
    ``'D'``). The daemon's start-up default: such a table is in ``shadow`` mode until a
    ``cdc.cutover`` marker (or an ``activity.capture_modes`` row) says otherwise."""
    return {t.table_name for t in audit_triggers(conn, settings) if t.is_enabled}


def by_table(triggers: Iterable[TriggerInfo]) -> dict[TableName, list[TriggerInfo]]:
    grouped: dict[TableName, list[TriggerInfo]] = {}
    for trigger in triggers:
        grouped.setdefault(trigger.table_name, []).append(trigger)
    return grouped


# -- which tables a command works on ----------------------------------------------------------


def resolve_tables(
    settings: Settings, names: Sequence[str] = (), phase: int | None = None
) -> list[TableName]:
    """The tables named on the command line (``schema.table``, or a bare table name that is
    unique among [[tables]]) plus those of ``phase``; each must be a configured table."""
    configured = configured_tables(settings)
    chosen: list[TableName] = []
    wanted: list[str] = list(names)
    if phase is not None:
        phases = settings.migration.phases
        if phase not in phases:
            known = ", ".join(str(p) for p in sorted(phases)) or "none"
            raise ConfigError(
                f"phase {phase} is not in [migration] phases (phases: {known}); add it to the "
                'config, e.g. [migration] phases = { 1 = ["public.notifications"] }'
            )
        wanted.extend(phases[phase])
    for name in wanted:
        try:
            key = split_qualified_name(name)
        except ValueError:
            if "." in name or '"' in name:
                raise ConfigError(
                    f"table {name!r} is not a valid name; write it as schema.table"
                ) from None
            matches = [t for t in configured if t[1] == name]
            if len(matches) != 1:
                raise ConfigError(
                    f"table {name!r} is "
                    + ("not a configured table" if not matches else "ambiguous")
                    + "; give it as schema.table, as in [[tables]]"
                ) from None
            key = matches[0]
        if key not in configured:
            raise ConfigError(
                f"table {name!r} is not in [[tables]]; only captured tables can move to CDC"
            )
        if key not in chosen:
            chosen.append(key)
    return chosen


# -- statements that recreate a trigger and its function --------------------------------------


def enable_statement(trigger: TriggerInfo, state: str | None = None) -> sql.Composed:
    """``ALTER TABLE ... ENABLE|DISABLE|ENABLE REPLICA|ENABLE ALWAYS TRIGGER name``."""
    clause = _ENABLE_CLAUSE[state or trigger.enabled]
    return sql.SQL("ALTER TABLE {} {} {}").format(
        qualified(trigger.schema, trigger.table), sql.SQL(clause), sql.Identifier(trigger.name)
    )


def function_statements(function: FunctionInfo) -> list[Statement]:
    """CREATE OR REPLACE the function (pg_get_functiondef carries language, volatility,
    SECURITY DEFINER and SET options), then its owner and its comment."""
    signature = sql.SQL(function.signature)
    return [
        sql.SQL(function.definition.rstrip()),
        sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(signature, sql.Identifier(function.owner)),
        sql.SQL("COMMENT ON FUNCTION {} IS {}").format(signature, sql.Literal(function.comment)),
    ]


def trigger_statements(trigger: TriggerInfo, *, replace: bool = True) -> list[Statement]:
    """(DROP IF EXISTS and) CREATE the trigger, set its enabled state and its comment."""
    table = qualified(trigger.schema, trigger.table)
    name = sql.Identifier(trigger.name)
    statements: list[Statement] = []
    if replace:
        statements.append(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(name, table))
    statements += [
        sql.SQL(trigger.definition),
        enable_statement(trigger),
        sql.SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
            name, table, sql.Literal(trigger.comment)
        ),
    ]
    return statements


def drop_trigger_statement(trigger: TriggerInfo) -> sql.Composed:
    return sql.SQL("DROP TRIGGER {} ON {}").format(
        sql.Identifier(trigger.name), qualified(trigger.schema, trigger.table)
    )


def drop_function_statement(function: FunctionInfo) -> sql.Composed:
    return sql.SQL("DROP FUNCTION {}").format(sql.SQL(function.signature))


# Run before recreating: names in the statements are qualified (search_path pg_catalog), and
# function bodies are checked when they run, as pg_dump does (a SQL-language body may name
# tables its search_path does not show).
RESTORE_SETTINGS = (
    "SET LOCAL search_path = pg_catalog",
    "SET LOCAL check_function_bodies = false",
)
