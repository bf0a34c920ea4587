"""The demo platform's schema (``sql/demo/platform.sql``, and the 64 legacy audit triggers of
``sql/demo/legacy_audit.sql``) and its seed: the base rows the workload works on."""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any

import psycopg
from psycopg import pq

from cdc.demo.workload.platform import Platform
from cdc.demo.workload.transaction import Tx, statement
from cdc.demo.workload.truth import GroundTruth
from cdc.sqlfiles import sql_path

log = logging.getLogger("cdc.demo_workload")  # log lines keep the name they had

#: The 18 tables of the demo platform, all in schema ``public``.
PLATFORM_TABLES: tuple[str, ...] = (
    "users",
    "organizations",
    "user_roles",
    "api_keys",
    "investors",
    "wallets",
    "kyc_verifications",
    "projects",
    "tokens",
    "documents",
    "subscriptions",
    "approvals",
    "token_allocations",
    "token_transfers",
    "compliance_checks",
    "distributions",
    "redemptions",
    "notifications",
)


STAFF_ROLES = ("admin", "compliance_officer", "operator")


def load_platform_schema(conn: psycopg.Connection[Any], *, legacy_triggers: bool = False) -> None:
    """Create the 18 demo tables (idempotent); with ``legacy_triggers``, the 64 audit triggers too.

    Runs in one transaction, committed here unless the caller already has one open.
    """
    names = ["demo/platform.sql"]
    if legacy_triggers:
        names.append("demo/legacy_audit.sql")
    with conn.transaction():
        for name in names:
            conn.execute(sql_path(name).read_bytes())
    log.debug("demo platform schema loaded (legacy audit triggers: %s)", legacy_triggers)


def unique_tag(tx: Tx) -> str:
    """A tag no other run gets: a value of the users id sequence (a gap in ids, nothing else)."""
    row = tx.read_one(statement("users_id_next"))
    return f"w{row[0]}"


def staff_users(tx: Tx) -> list[int]:
    rows = tx.read(statement("staff_users"), (list(STAFF_ROLES),))
    return [int(row[0]) for row in rows]


def seed(conn: psycopg.Connection[Any], *, scale: int = 1, rng: random.Random) -> GroundTruth:
    """Insert the base rows the workload works on, in one transaction committed here.

    ``scale`` 1 is about 250 row changes (5 staff users, 2 issuers with 4 projects, 20
    investors); they grow linearly. Needs a connection with no transaction in progress.
    """
    if scale < 1:
        raise ValueError(f"scale must be at least 1, not {scale}")
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError("seed() commits its own transaction: the connection must be idle")
    with conn.transaction():
        tx = Tx(conn)
        platform = Platform(rng, unique_tag(tx), [])
        platform.seed(tx, scale)
    truth = GroundTruth(counts=Counter(tx.counts), committed=1)
    log.debug("demo platform seeded: %d row changes (scale %d)", truth.total(), scale)
    return truth
