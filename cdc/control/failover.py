"""Surviving a failover of the source: what ``cdc check`` verifies, and why.

A logical slot lives on one server. Before PostgreSQL 17 a physical standby has no copy of it:
after a failover the slot is gone, the daemon cannot resume, and every change made between the
last checkpoint and a new ``cdc setup`` on the promoted server is never recorded.

From 17 on, a slot created with ``failover = true`` (what ``cdc setup`` does, ``[source]
failover_slot``) is copied to a standby that has ``sync_replication_slots = on``,
``hot_standby_feedback = on``, ``primary_slot_name`` (a physical slot on the primary) and a
``dbname`` in ``primary_conninfo``; after promotion the daemon resumes from its checkpoint on
the new primary, through a multi-host DSN (``host=a,b target_session_attrs=read-write``).

That alone does not stop the daemon from recording a change the standby never received (lost
with the old primary): ``synchronized_standby_slots`` on the primary, naming the standby's
physical slot, makes the walsender hold logical changes back until that standby has them.
Without it the records can hold changes that never happened on the new primary, and the
checkpoint can be ahead of the new primary's WAL, which skips its first transactions.

Pure helpers take values; :func:`failover_findings` reads the source (and the standbys that the
DSN names) and returns findings for ``cdc check``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cdc.dsn import connect_failure

FAILOVER_SLOTS_SINCE = 170000  # server_version_num that added failover slots


@dataclass(frozen=True)
class Finding:
    status: Literal["ok", "warn"]
    name: str
    message: str


def dsn_hosts(dsn: str) -> list[tuple[str, str]]:
    """The (host, port) pairs of a DSN, in order (libpq's multi-host syntax: ``host=a,b``
    with one port, or one port per host)."""
    params = conninfo_to_dict(dsn)
    hosts = str(params.get("host") or params.get("hostaddr") or "localhost").split(",")
    ports = str(params.get("port") or "5432").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    return list(zip(hosts, ports, strict=False))


def single_host_dsn(dsn: str, host: str, port: str) -> str:
    """The DSN narrowed to one host, any session (a standby is read-only)."""
    params = {k: v for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params.pop("hostaddr", None)
    params.update(host=host, port=port, target_session_attrs="any", connect_timeout="5")
    return make_conninfo("", **params)


def standby_settings_to_add(
    settings: dict[str, str], *, physical_slot: str | None, dbname: str
) -> list[str]:
    """What a standby lacks to keep failover slots in sync, as postgresql.conf lines.
    ``settings`` holds the standby's current values."""
    missing = []
    if settings.get("sync_replication_slots") != "on":
        missing.append("sync_replication_slots = on")
    if settings.get("hot_standby_feedback") != "on":
        missing.append("hot_standby_feedback = on")
    if not settings.get("primary_slot_name"):
        missing.append(f"primary_slot_name = '{physical_slot or '<a physical slot>'}'")
    conninfo = settings.get("primary_conninfo", "")
    try:
        has_dbname = bool(conninfo_to_dict(conninfo).get("dbname")) if conninfo else False
    except psycopg.ProgrammingError:
        has_dbname = False
    if not has_dbname:
        missing.append(f"primary_conninfo = '... dbname={dbname}'")
    if settings.get("wal_level") != "logical":
        missing.append("wal_level = logical")
    return missing


_STANDBY_SETTINGS = (
    "sync_replication_slots",
    "hot_standby_feedback",
    "primary_slot_name",
    "primary_conninfo",
    "wal_level",
)


def failover_findings(
    conn: psycopg.Connection[Any], dsn: str, slot: str, failover_wanted: bool
) -> list[Finding]:
    """What a failover of the source would do to the slot, for ``cdc check``."""
    version = conn.info.server_version
    dbname = conn.info.dbname
    physical = [
        (str(name), bool(active))
        for name, active in conn.execute(
            "SELECT slot_name, active FROM pg_replication_slots WHERE slot_type = 'physical' "
            "ORDER BY slot_name"
        )
    ]
    here = (conn.info.host, str(conn.info.port))
    others = [pair for pair in dsn_hosts(dsn) if pair != here]
    if version < FAILOVER_SLOTS_SINCE:
        return _without_failover_slots(conn, slot, has_standby=bool(physical or others))
    row = conn.execute(
        "SELECT (to_jsonb(s) ->> 'failover')::boolean FROM pg_replication_slots s "
        "WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if row is None:
        return []  # the slot check says so
    if not failover_wanted:
        return [Finding("ok", "failover", f"failover off for slot {slot} ([source] failover_slot)")]
    findings = []
    if not row[0]:
        findings.append(
            Finding(
                "warn",
                "failover",
                f"slot {slot} is not a failover slot, so no standby keeps a copy; stop the "
                "daemon and run cdc setup (it makes it one)",
            )
        )
    names = [
        name.strip()
        for name in _setting(conn, "synchronized_standby_slots").split(",")
        if name.strip()
    ]
    physical_names = [name for name, _ in physical]
    findings += _standby_slots_findings(
        slot, dbname, names, physical_names, bool(physical or others)
    )
    for host, port in others:
        findings.append(_standby_finding(dsn, host, port, slot, names or physical_names, dbname))
    if not findings or all(f.status == "ok" for f in findings):
        findings.insert(0, Finding("ok", "failover", f"failover slot {slot} kept on a standby"))
    return findings


def _without_failover_slots(
    conn: psycopg.Connection[Any], slot: str, *, has_standby: bool
) -> list[Finding]:
    """Before 17 a failover loses the slot: worth a warning wherever there is a standby."""
    version = conn.info.server_version
    row = conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()
    senders = int(row[0]) if row else 0
    if has_standby or senders > 1:
        return [
            Finding(
                "warn",
                "failover",
                f"PostgreSQL {version // 10000} has no failover slots: after a failover to "
                f"a standby, slot {slot} is gone and the changes made until a new cdc setup "
                'on the promoted server are not recorded; see docs/operations.md "Failover" '
                "(PostgreSQL 17 keeps the slot on the standby)",
            )
        ]
    return []


def _standby_slots_findings(
    slot: str, dbname: str, names: list[str], physical_names: list[str], has_standby: bool
) -> list[Finding]:
    """A standby that keeps the slot, and synchronized_standby_slots naming it."""
    findings: list[Finding] = []
    if not has_standby:
        findings.append(
            Finding(
                "warn",
                "failover",
                f"no standby streams through a physical slot, so none keeps slot {slot}: on the "
                "primary SELECT pg_create_physical_replication_slot('standby1') and ALTER SYSTEM "
                "SET synchronized_standby_slots = 'standby1'; on the standby set "
                + ", ".join(standby_settings_to_add({}, physical_slot="standby1", dbname=dbname)),
            )
        )
    elif not names:
        suggestion = ", ".join(physical_names) or "<the standby's primary_slot_name>"
        findings.append(
            Finding(
                "warn",
                "synchronized_standby_slots",
                "empty: the daemon can record changes the standby has not received, which a "
                "failover then loses (records of changes the new primary never had); ALTER "
                f"SYSTEM SET synchronized_standby_slots = '{suggestion}'; SELECT pg_reload_conf()",
            )
        )
    else:
        unknown = [name for name in names if name not in physical_names]
        if unknown:
            findings.append(
                Finding(
                    "warn",
                    "synchronized_standby_slots",
                    f"names {', '.join(unknown)}, which is not a physical slot here: logical "
                    "changes wait for it forever; fix synchronized_standby_slots",
                )
            )
        else:
            findings.append(
                Finding(
                    "ok",
                    "synchronized_standby_slots",
                    f"synchronized_standby_slots = {', '.join(names)}: changes reach the daemon "
                    "only after that standby has them",
                )
            )
    return findings


def _standby_finding(
    dsn: str, host: str, port: str, slot: str, physical_slots: list[str], dbname: str
) -> Finding:
    name = f"standby {host}:{port}"
    try:
        standby = psycopg.connect(single_host_dsn(dsn, host, port), autocommit=True)
    except psycopg.Error as exc:
        return Finding(
            "warn",
            name,
            f"cannot connect ({connect_failure(exc, dsn)}): its slot sync is not checked",
        )
    with contextlib.closing(standby):
        row = standby.execute("SELECT pg_is_in_recovery()").fetchone()
        if not (row and row[0]):
            return Finding("warn", name, "is not a standby (not in recovery): two primaries?")
        values = {key: _setting(standby, key) for key in _STANDBY_SETTINGS}
        missing = standby_settings_to_add(
            values, physical_slot=physical_slots[0] if physical_slots else None, dbname=dbname
        )
        if missing:
            return Finding(
                "warn",
                name,
                f"does not keep slot {slot} in sync; add to its postgresql.conf: "
                + "; ".join(missing)
                + " (then restart it)",
            )
        synced = standby.execute(
            "SELECT synced AND NOT temporary, confirmed_flush_lsn::text FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    if not (synced and synced[0]):
        return Finding(
            "warn",
            name,
            f"is set up for slot sync but has no ready copy of slot {slot} yet (the daemon must "
            "have acknowledged a position the standby has received)",
        )
    return Finding("ok", name, f"{name} keeps slot {slot} in sync (at {synced[1]})")


def _setting(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute("SELECT current_setting(%s, true)", (name,)).fetchone()
    return str(row[0]) if row and row[0] is not None else ""
