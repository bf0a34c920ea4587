"""The logical replication slot: created last (its consistent point is where capture starts),
and a failover slot where the server has them (``[source] failover_slot``)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.control.failover import FAILOVER_SLOTS_SINCE
from cdc.control.setup.plan import SetupPlan, Step
from cdc.errors import ConfigError, PrerequisiteError


def wants_failover_slot(settings: Settings, server_version: int) -> bool:
    """``[source] failover_slot``, by default on where the server has failover slots."""
    wanted = settings.source.failover_slot
    if wanted is None:
        return server_version >= FAILOVER_SLOTS_SINCE
    if wanted and server_version < FAILOVER_SLOTS_SINCE:
        raise ConfigError(
            f"[source] failover_slot = true needs PostgreSQL 17 or later (the source runs "
            f'{server_version // 10000}); remove it, and see docs/operations.md "Failover" '
            "for what a failover loses before 17"
        )
    return wanted


def plan_slot(source: psycopg.Connection[Any], settings: Settings, plan: SetupPlan) -> None:
    slot = settings.source.slot
    failover = wants_failover_slot(settings, source.info.server_version)
    row = source.execute(
        "SELECT plugin, slot_type, database, (to_jsonb(s) ->> 'failover')::boolean "  # 17+
        "FROM pg_replication_slots s WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if row is None:
        kind = "pgoutput, failover" if failover else "pgoutput"
        statement = sql.SQL(
            "SELECT lsn::text FROM pg_create_logical_replication_slot({}, 'pgoutput'{})"
        ).format(sql.Literal(slot), sql.SQL(", failover => true" if failover else ""))
        plan.steps.append(
            Step(
                kind="slot",
                target="source",
                description=f"create logical replication slot {slot} ({kind})",
                done=f"created logical replication slot {slot} ({kind})",
                statements=(statement.as_string(source),),
            )
        )
        return
    plugin, slot_type, database, slot_failover = row
    if slot_type != "logical" or plugin != "pgoutput":
        raise PrerequisiteError(
            f'slot "{slot}" exists but is a {slot_type} slot with plugin {plugin!r}; choose '
            "another [source] slot name"
        )
    current_db = source.info.dbname
    if database != current_db:
        raise PrerequisiteError(
            f'slot "{slot}" belongs to database {database!r}, not {current_db!r}; '
            "choose another [source] slot name"
        )
    if slot_failover is not None and bool(slot_failover) != failover:
        # Only over a replication connection, and only while no daemon streams from it.
        statement = sql.SQL("ALTER_REPLICATION_SLOT {} (FAILOVER {})").format(
            sql.Identifier(slot), sql.SQL("true" if failover else "false")
        )
        change = "make" if failover else "stop making"
        plan.steps.append(
            Step(
                kind="slot",
                target="source",
                description=f"{change} slot {slot} a failover slot ([source] failover_slot)",
                done=f"slot {slot} is {'now' if failover else 'no longer'} a failover slot",
                statements=(statement.as_string(source),),
                replication=True,
            )
        )
        return
    plan.unchanged.append(f"slot {slot} exists" + (" (failover)" if slot_failover else ""))
