"""``cdc teardown``: drop the slot and the publication, never the activity store (the records
are the audit trail, and the checkpoint row says where they stop)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.connect import connect
from cdc.control.setup.plan import relation_exists
from cdc.dsn import describe_target
from cdc.errors import ConnectError, PrerequisiteError, SlotError, SlotInUse

log = logging.getLogger("cdc.provision")  # log lines keep the name they had


@dataclass(frozen=True)
class TeardownPlan:
    source: str
    slot: str | None  # the slot, if it exists
    publication: str | None  # the publication, if it exists
    last_commit_lsn: str | None  # the last recorded source commit (where the records stop)
    last_commit_time: datetime | None

    @property
    def empty(self) -> bool:
        return self.slot is None and self.publication is None

    def describe(self) -> list[str]:
        lines = []
        if self.slot:
            lines.append(f"drop replication slot {self.slot}")
        if self.publication:
            lines.append(f"drop publication {self.publication}")
        return lines


def plan_teardown(settings: Settings) -> TeardownPlan:
    """What teardown would drop. Raises SlotInUse when a process streams from the slot."""
    slot_name, publication = settings.source.slot, settings.source.publication
    with connect(settings.source.dsn) as source:
        slot = source.execute(
            "SELECT active_pid, slot_type, plugin, database FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot_name,),
        ).fetchone()
        publication_row = source.execute(
            "SELECT pg_has_role(pubowner, 'USAGE') FROM pg_publication WHERE pubname = %s",
            (publication,),
        ).fetchone()
        has_publication = publication_row is not None
        current_db = source.info.dbname
        user = source.info.user
    if publication_row is not None and not publication_row[0]:
        # checked before the slot is dropped, so that teardown never stops half way
        raise PrerequisiteError(
            f"cdc teardown as role {user}: must be owner of publication {publication}; run "
            "cdc teardown as the role that ran cdc setup (the owner of the tables, or a superuser)"
        )
    if slot is not None:
        pid, slot_type, plugin, database = slot
        if slot_type != "logical" or plugin != "pgoutput" or database != current_db:
            raise SlotError(
                f'slot "{slot_name}" is a {slot_type} slot ({plugin or "no plugin"}) of database '
                f"{database!r}, not activity-cdc's slot in {current_db!r}; not dropping it"
            )
        if pid is not None:
            raise SlotInUse(
                f'replication slot "{slot_name}" is in use by pid {pid}; stop the daemon '
                f"(or SELECT pg_terminate_backend({pid})) and run teardown again"
            )
    commit_lsn, commit_time = _last_checkpoint(settings)
    return TeardownPlan(
        source=describe_target(settings.source.dsn),
        slot=slot_name if slot is not None else None,
        publication=publication if has_publication else None,
        last_commit_lsn=commit_lsn,
        last_commit_time=commit_time,
    )


def _last_checkpoint(settings: Settings) -> tuple[str | None, datetime | None]:
    schema = settings.sink.schema_name
    try:
        with connect(settings.sink_dsn, role="sink") as sink:
            if not relation_exists(sink, schema, "checkpoints"):
                return None, None
            row = sink.execute(
                sql.SQL(
                    "SELECT commit_lsn::text, commit_time FROM {}.checkpoints WHERE slot_name = %s"
                ).format(sql.Identifier(schema)),
                (settings.source.slot,),
            ).fetchone()
    except (ConnectError, psycopg.Error) as exc:
        log.warning("teardown: cannot read the checkpoint: %s", exc)
        return None, None
    return (row[0], row[1]) if row else (None, None)


def teardown(settings: Settings, plan: TeardownPlan) -> list[str]:
    """Drop the slot and the publication of ``plan``; never the activity store."""
    done = []
    with connect(settings.source.dsn) as source:
        if plan.slot:
            try:
                source.execute("SELECT pg_drop_replication_slot(%s)", (plan.slot,))
            except psycopg.errors.ObjectInUse as exc:
                raise SlotInUse(
                    f"{exc.diag.message_primary}; stop the daemon and run teardown again"
                ) from None
            except psycopg.errors.UndefinedObject:
                pass  # dropped meanwhile: the goal is reached
            done.append(f"dropped replication slot {plan.slot}")
        if plan.publication:
            source.execute(
                sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(plan.publication))
            )
            done.append(f"dropped publication {plan.publication}")
    for line in done:
        log.info("teardown: %s", line)
    return done
