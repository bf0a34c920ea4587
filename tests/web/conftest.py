"""The web server on the real PostgreSQL fixture: a small platform's activity written by the
real pipeline (changes committed, then the daemon drained), and ``cdc serve``'s server on a
free port with a known token, reading as the read-only role of ``--print-role-sql --reader``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from cdc.config import Settings
from cdc.control.roles import reader_role_sql
from cdc.demo.embedded import free_port
from cdc.web.auth import TokenCheck
from cdc.web.server import Access, WebServer
from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, make_settings, setup_and_settings

TOKEN = "test-token-7c1f"
READER_PASSWORD = "reader-pw-51"

DDL = """
CREATE TABLE public.investors (
    id bigint PRIMARY KEY, name text, kyc_status text, email text, updated_by text
);
CREATE TABLE public.notes (id bigint PRIMARY KEY, investor_id bigint, body text);
"""
TABLES = [
    {
        "name": "public.investors",
        "entity_type": "investor",
        "category": "investor_management",
        "actor_columns": ["updated_by"],
        "rules": [
            {
                "column": "kyc_status",
                "to": "approved",
                "action": "kyc.approved",
                "category": "compliance",
                "severity": "notice",
            }
        ],
    },
    {"name": "public.notes", "category": "content", "severity": {"delete": "error"}},
]
SCRIPT = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
# investor 30's name: what a hand-made CSV or JSON encoder gets wrong
TRICKY = 'Ann \\ "the" O\'Neil,\n\tline\x01\x02 é ☃'


def name_of(i: int) -> str:
    return TRICKY if i == 30 else f"Investor {i}"


@dataclass
class Platform:
    pg: PgDatabase
    settings: Settings  # as the daemon's owner; `reader` reads as the read-only role
    reader: Settings

    def commit(self, statement: str, params: object = None) -> None:
        """Run a statement in its own transaction, then record it (drain the daemon)."""
        self.pg.execute(statement, params)
        drain(self.settings)


def _write_activity(pg: PgDatabase, settings: Settings) -> None:
    with pg.connect() as conn:
        for i in range(1, 31):  # 30 sign-ups, one transaction each
            conn.execute(
                "INSERT INTO investors VALUES (%s, %s, 'pending', %s, %s)",
                (i, name_of(i), f"i{i}@example.com", "17" if i % 2 else "23"),
            )
        with conn.transaction():  # one transaction of several records
            for i in range(1, 6):
                conn.execute(
                    "UPDATE investors SET kyc_status = 'approved', updated_by = '99' WHERE id = %s",
                    (i,),
                )
        conn.execute("UPDATE investors SET email = 'new@example.com' WHERE id = 7")
        conn.execute("INSERT INTO notes VALUES (1, 7, %s)", (SCRIPT,))
        conn.execute("DELETE FROM notes WHERE id = 1")
        conn.execute(
            "SELECT activity.log('report.exported', 'report', 'q3', '{\"rows\": 12}', "
            "'reporting', 'warning', '42', 'report q3 exported by 42')"
        )
    drain(settings)


def reader_settings(pg: PgDatabase, settings: Settings) -> Settings:
    """The settings with [web] dsn on the read-only role (created here, as --reader prints)."""
    role = f"reader_{pg.slot.removeprefix('slot_')}"
    pg.execute(reader_role_sql(settings, role))
    pg.execute(f"ALTER ROLE {role} PASSWORD '{READER_PASSWORD}'")
    dsn = pg.server.dsn_for(pg.name, user=role, password=READER_PASSWORD)
    tables = [dict(t) for t in TABLES]
    return make_settings(pg, tables, web={"dsn": dsn})


@pytest.fixture
def platform(pg: PgDatabase) -> Iterator[Platform]:
    settings = setup_and_settings(pg, DDL, TABLES)
    _write_activity(pg, settings)
    try:
        yield Platform(pg, settings, reader_settings(pg, settings))
    finally:
        drop_reader(pg)


def drop_reader(pg: PgDatabase) -> None:
    with pg.connect() as conn:  # a role belongs to the cluster: it outlives the database
        role = f"reader_{pg.slot.removeprefix('slot_')}"
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def server(platform: Platform) -> Iterator[WebServer]:
    access = Access("127.0.0.1", free_port(), TokenCheck(token=TOKEN))
    web = WebServer(platform.reader, access).start()
    try:
        yield web
    finally:
        web.stop()


@pytest.fixture
def api(server: WebServer) -> Iterator[httpx.Client]:
    """A client that sends the token."""
    with httpx.Client(
        base_url=server.access.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ) as client:
        yield client
