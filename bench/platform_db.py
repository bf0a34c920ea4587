"""Benchmark databases: the demo platform, seeded once, copied per benchmark and per mode.

The template holds the 18 tables of ``sql/demo/platform.sql`` and the rows of
``bench/sql/seed_platform.sql``; every benchmark database is a file copy of it, so all modes
start from byte-identical data. A mode then adds what it measures: the 64 legacy audit
triggers (``sql/demo/legacy_audit.sql``), or ``cdc setup`` (store, publication, REPLICA
IDENTITY FULL, slot).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.server import BenchServer
from cdc.demo.workload import load_platform_schema

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).parent / "sql"
TEMPLATE_DB = "bench_template"


@dataclass(frozen=True)
class SeedCounts:
    """Rows per seeded table; also the ranges the pgbench scripts pick existing rows from."""

    users: int
    orgs: int
    investors: int
    projects: int
    subscriptions: int
    allocations: int
    transfers: int
    distributions: int
    redemptions: int
    api_keys: int
    notifications: int
    documents: int

    @classmethod
    def for_users(cls, users: int) -> SeedCounts:
        users = max(users, 200)
        investors = users * 3 // 4  # investor i is user 10 + i: leaves the 10 staff users
        projects = max(20, users // 50)
        subscriptions = investors * 2
        allocations = subscriptions // 2
        return cls(
            users=users,
            orgs=max(10, users // 100),
            investors=investors,
            projects=projects,
            subscriptions=subscriptions,
            allocations=allocations,
            transfers=allocations // 4,
            distributions=allocations // 2,
            redemptions=allocations // 10,
            api_keys=max(20, users // 10),
            notifications=users * 2,
            documents=projects * 2,
        )

    def as_params(self) -> dict[str, int]:
        return asdict(self)


def seed_statements() -> list[str]:
    """The seed file's statements, comments removed (they may hold a bare ``%``)."""
    text = (SQL_DIR / "seed_platform.sql").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";\n") if part.strip()]


def build_template(server: BenchServer, counts: SeedCounts) -> None:
    """Create the seeded template database that every benchmark database copies."""
    server.create_database(TEMPLATE_DB)
    with server.connect(TEMPLATE_DB) as conn:
        load_platform_schema(conn)
        with conn.transaction():
            for statement in seed_statements():
                conn.execute(statement.encode(), counts.as_params())
        conn.execute("VACUUM ANALYZE")
    log.info("template database seeded: %s", counts)


def create_platform_db(server: BenchServer, name: str, *, legacy_triggers: bool = False) -> str:
    """A copy of the template; with the 64 legacy audit triggers if asked. Returns its DSN."""
    dsn = server.create_database(name, template=TEMPLATE_DB)
    if legacy_triggers:
        with server.connect(name) as conn:
            load_platform_schema(conn, legacy_triggers=True)
            row = conn.execute(
                "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'audit_%'"
            ).fetchone()
            if row is None or row[0] != 64:
                raise RuntimeError(f"expected 64 legacy audit triggers, found {row}")
    return dsn
