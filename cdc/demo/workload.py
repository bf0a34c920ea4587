"""A realistic workload on the demo platform, with an exact count of the row changes it committed.

Used by ``cdc demo``, the integration and chaos tests and the benchmarks. The schema is
``sql/demo/platform.sql`` (18 tables of a tokenization platform); ``sql/demo/legacy_audit.sql``
adds the 64 audit triggers that activity-cdc replaces. See ``docs/demo-platform.md``.

The workload runs the application's transactions: register a user, submit and review KYC, add a
wallet, subscribe to a project, approve a subscription, allocate tokens, transfer tokens, pay a
distribution, redeem, upload a document (large text), delete notifications, rotate an API key,
and updates that change only ignored columns (``last_seen_at``, ``updated_at``). Each has 1 to 6
row changes over rows chosen consistently with the foreign keys. A fraction ends in ROLLBACK, and
some roll back part of their work to a SAVEPOINT.

Ground truth: a :class:`GroundTruth` counts the committed row changes per (table, operation),
with the bare table name (``"subscriptions"``) and the operation in lower case (``"insert"``,
``"update"``, ``"delete"``). A statement's changes are its ``cursor.rowcount``; they count only
when their transaction's COMMIT returned, and changes undone by ROLLBACK TO SAVEPOINT never
count. The schema has no cascading foreign keys, so every statement changes one table only.
When the connection breaks during COMMIT the outcome is unknown to the client: the transaction's
id, taken just before COMMIT, is looked up with ``txid_status()`` on a new connection, and
counted if and only if the server committed it. Workload sessions run with
``synchronous_commit = on`` so that an acknowledged commit survives a killed server.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any, LiteralString

import psycopg
from psycopg import errors, pq, sql
from psycopg.types.json import Jsonb

from cdc.errors import ConnectError, PrerequisiteError
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

Key = tuple[str, str]  # (table, operation)
_Query = LiteralString | bytes | sql.SQL | sql.Composed

SAVEPOINT_RATIO = 0.08  # transactions with an extra savepoint; half roll it back, half release it
TRANSFER_FAILURE_RATIO = 0.2  # token transfers whose submission is rolled back to the savepoint
CONNECT_TIMEOUT_S = 5
RECONNECT_GIVE_UP_S = 120.0  # a client stops after this long without a connection
RESOLVE_GIVE_UP_S = 120.0  # an unknown commit outcome stays in doubt after this long

_STAFF_ROLES = ("admin", "compliance_officer", "operator")


# -------------------------------------------------------------------------------------------------
# Schema
# -------------------------------------------------------------------------------------------------


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


# -------------------------------------------------------------------------------------------------
# Ground truth
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InDoubt:
    """A transaction whose COMMIT broke off: its changes count only if ``txid`` committed."""

    txid: int
    counts: Counter[Key]


@dataclass
class GroundTruth:
    """What a workload committed: row changes per (table, operation), and transaction outcomes."""

    counts: Counter[Key] = field(default_factory=Counter)
    committed: int = 0  # transactions whose COMMIT succeeded (including resolved ones)
    rolled_back: int = 0  # transactions that ended in ROLLBACK on purpose
    failed: int = 0  # transactions ended by an error (nothing counted)
    resolved: int = 0  # commits that broke off and were resolved with txid_status()
    in_doubt: list[InDoubt] = field(default_factory=list)  # not resolved yet: not counted
    errors: list[str] = field(default_factory=list)  # clients that gave up, and why

    def total(self) -> int:
        """All committed row changes."""
        return sum(self.counts.values())

    def count(self, table: str, operation: str) -> int:
        return self.counts[(table, operation)]

    @property
    def exact(self) -> bool:
        """True when no commit outcome is unknown: ``counts`` is exactly what was committed."""
        return not self.in_doubt

    def merge(self, other: GroundTruth) -> GroundTruth:
        """Add ``other`` into this one (in place) and return self."""
        self.counts.update(other.counts)
        self.committed += other.committed
        self.rolled_back += other.rolled_back
        self.failed += other.failed
        self.resolved += other.resolved
        self.in_doubt.extend(other.in_doubt)
        self.errors.extend(other.errors)
        return self

    def settle(self, txid: int, counts: Counter[Key], status: str | None) -> None:
        """Record a broken-off commit given its ``txid_status()`` (None: still unknown)."""
        if status == "committed":
            self.counts.update(counts)
            self.committed += 1
            self.resolved += 1
        elif status == "aborted":
            self.failed += 1
            self.resolved += 1
        else:
            self.in_doubt.append(InDoubt(txid, counts))

    def resolve_in_doubt(self, dsn: str, *, timeout_s: float = 30.0) -> bool:
        """Look up the transactions still in doubt (e.g. once a killed server is back).

        Returns True when none is left in doubt.
        """
        pending, self.in_doubt = self.in_doubt, []
        for item in pending:
            self.settle(item.txid, item.counts, txid_status(dsn, item.txid, give_up_s=timeout_s))
        return self.exact


def txid_status(
    dsn: str, txid: int, *, give_up_s: float, stop: threading.Event | None = None
) -> str | None:
    """``'committed'`` or ``'aborted'``, asked on a new connection, retried while the server is
    unreachable or the transaction still in progress; None after ``give_up_s`` or on ``stop``."""
    deadline = time.monotonic() + give_up_s
    delay = 0.05
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                row = conn.execute("SELECT txid_status(%s)", (txid,)).fetchone()
            status = None if row is None else row[0]
            if status in ("committed", "aborted"):
                log.debug("transaction %d whose commit broke off was %s", txid, status)
                return str(status)
            if status is None:
                log.error("transaction %d is too old for txid_status(); outcome unknown", txid)
                return None
        except psycopg.Error as exc:
            log.debug("cannot ask for the outcome of transaction %d yet: %s", txid, exc)
        if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            log.warning("outcome of transaction %d still unknown; left in doubt", txid)
            return None
        if stop is not None:
            stop.wait(delay)
        else:
            time.sleep(delay)
        delay = min(delay * 2, 1.0)


# -------------------------------------------------------------------------------------------------
# One transaction: statements and the rows they changed
# -------------------------------------------------------------------------------------------------


class _Tx:
    """Runs the statements of one open transaction and counts the rows each one changed."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.cur: psycopg.Cursor[Any] = conn.cursor()
        self.counts: Counter[Key] = Counter()
        self._savepoints: list[tuple[sql.Identifier, Counter[Key]]] = []
        self._savepoint_seq = 0

    def write(self, table: str, operation: str, query: _Query, params: Sequence[Any] = ()) -> Any:
        """Run an INSERT/UPDATE/DELETE on ``table``; return its RETURNING rows (else [])."""
        self.cur.execute(query, params)
        if self.cur.rowcount > 0:
            self.counts[(table, operation)] += self.cur.rowcount
        return self.cur.fetchall() if self.cur.description is not None else []

    def read(self, query: _Query, params: Sequence[Any] = ()) -> list[Any]:
        return self.cur.execute(query, params).fetchall()

    def read_one(self, query: _Query, params: Sequence[Any] = ()) -> Any:
        return self.cur.execute(query, params).fetchone()

    def savepoint(self) -> None:
        self._savepoint_seq += 1
        name = sql.Identifier(f"sp_{self._savepoint_seq}")
        self.cur.execute(sql.SQL("SAVEPOINT {}").format(name))
        self._savepoints.append((name, Counter(self.counts)))

    def rollback_to_savepoint(self) -> None:
        name, counts = self._savepoints.pop()
        self.cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(name))
        self.cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(name))
        self.counts = counts

    def release_savepoint(self) -> None:
        name, _ = self._savepoints.pop()
        self.cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(name))

    def txid(self) -> int:
        row = self.read_one("SELECT txid_current()")
        return int(row[0])


# -------------------------------------------------------------------------------------------------
# The platform's actions
# -------------------------------------------------------------------------------------------------

_FIRST_NAMES = (
    "Ada",
    "Alan",
    "Amara",
    "Barbara",
    "Chen",
    "Dennis",
    "Edsger",
    "Frances",
    "Grace",
    "Hedy",
    "Ines",
    "Joan",
    "Katherine",
    "Ken",
    "Lena",
    "Linus",
    "Margaret",
    "Mateo",
    "Niklaus",
    "Omar",
    "Priya",
    "Radia",
    "Sophie",
    "Tim",
    "Yukihiro",
    "Zhang",
)
_LAST_NAMES = (
    "Allen",
    "Backus",
    "Bose",
    "Cerf",
    "Dijkstra",
    "Engelbart",
    "Goldberg",
    "Hamilton",
    "Hopper",
    "Kahn",
    "Knuth",
    "Lamport",
    "Liskov",
    "Lovelace",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Perlman",
    "Ritchie",
    "Silva",
    "Stonebraker",
    "Thompson",
    "Turing",
    "Wirth",
)
_COUNTRIES = ("US", "GB", "DE", "FR", "CH", "SG", "AE", "JP", "CA", "AU", "NL", "IE", "LU", "HK")
_CURRENCIES = ("USD", "USD", "EUR", "GBP", "USDC")
_CHAINS = ("ethereum", "ethereum", "polygon", "avalanche", "stellar")
_PROJECT_TYPES = ("equity", "debt", "real_estate", "fund", "receivables")
_KYC_PROVIDERS = ("onfido", "sumsub", "jumio", "persona")
_DOCUMENT_TYPES = ("passport", "national_id", "driving_licence")
_ASSET_WORDS = (
    "Harbour",
    "Solar",
    "Vineyard",
    "Logistics",
    "Meridian",
    "Northwind",
    "Atlas",
    "Cedar",
    "Granite",
    "Riverside",
    "Summit",
    "Orchard",
    "Beacon",
    "Keystone",
    "Lumen",
    "Tidal",
)
_TEXT_WORDS = (
    "the",
    "issuer",
    "shall",
    "token",
    "holder",
    "investor",
    "subscription",
    "agreement",
    "of",
    "and",
    "to",
    "in",
    "distribution",
    "redemption",
    "price",
    "per",
    "unit",
    "net",
    "asset",
    "value",
    "lock-up",
    "period",
    "transfer",
    "restriction",
    "jurisdiction",
    "accredited",
    "custodian",
    "wallet",
    "record",
    "date",
    "coupon",
    "interest",
    "dividend",
    "payable",
    "quarterly",
    "risk",
    "factors",
    "include",
    "liquidity",
    "market",
    "regulatory",
    "tax",
    "may",
    "not",
    "be",
    "offered",
    "or",
    "sold",
    "except",
    "pursuant",
    "exemption",
    "registration",
    "notice",
    "governing",
    "law",
    "clause",
    "section",
    "schedule",
    "annex",
    "fund",
    "property",
    "revenue",
    "yield",
    "maturity",
    "principal",
    "waterfall",
    "escrow",
    "settlement",
    "ledger",
)
_MICRO = Decimal("0.000001")


def _scaled(value: Decimal, percent: int) -> Decimal:
    return (value * percent / 100).quantize(_MICRO, rounding=ROUND_DOWN)


class _Platform:
    """The application: each action runs a few statements in the caller's transaction.

    An action returns False when there is nothing for it to act on (then the workload registers
    a user instead), True otherwise, even when a guarded UPDATE found its row already moved on.
    """

    def __init__(self, rng: random.Random, tag: str, staff: Sequence[int]) -> None:
        self.rng = rng
        self.tag = tag  # unique per client run: keeps emails, slugs and symbols unique
        self.staff = list(staff)
        self._seq = 0

    # ---- values ------------------------------------------------------------------------------

    def _unique(self) -> str:
        self._seq += 1
        return f"{self.tag}n{self._seq}"

    def _actor(self) -> int | None:
        return self.rng.choice(self.staff) if self.staff else None

    def _person(self) -> tuple[str, str]:
        return self.rng.choice(_FIRST_NAMES), self.rng.choice(_LAST_NAMES)

    def _hex(self, bits: int) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def _money(self, low: int, high: int) -> Decimal:
        return Decimal(self.rng.randrange(low * 100, high * 100)) / 100

    def _text(self, size_bytes: int) -> str:
        words = self.rng.choices(_TEXT_WORDS, k=max(1, size_bytes // 7))
        return " ".join(words)

    def _document_size(self, low: int, high: int) -> int:
        return int(math.exp(self.rng.uniform(math.log(low), math.log(high))))

    # ---- picking existing rows ---------------------------------------------------------------

    def _pick(
        self,
        tx: _Tx,
        table: LiteralString,
        columns: LiteralString = "id",
        where: LiteralString = "true",
        params: Sequence[Any] = (),
    ) -> Any:
        """A row of ``table`` matching ``where``, chosen at random; None if none matches."""
        ident = sql.Identifier(table)
        bounds = tx.read_one(sql.SQL("SELECT min(id), max(id) FROM public.{}").format(ident))
        if bounds is None or bounds[0] is None:
            return None
        point = self.rng.randint(bounds[0], bounds[1])
        base = sql.SQL("SELECT {} FROM public.{} WHERE ({})").format(
            sql.SQL(columns), ident, sql.SQL(where)
        )
        row = tx.read_one(base + sql.SQL(" AND id >= %s ORDER BY id LIMIT 1"), [*params, point])
        if row is None:
            row = tx.read_one(base + sql.SQL(" ORDER BY id LIMIT 1"), params)
        return row

    def _pick_document(self, tx: _Tx, status: str) -> Any:
        point = uuid.UUID(int=self.rng.getrandbits(128))
        query: LiteralString = "SELECT id FROM public.documents WHERE status = %s"
        row = tx.read_one(query + " AND id >= %s ORDER BY id LIMIT 1", (status, point))
        if row is None:
            row = tx.read_one(query + " ORDER BY id LIMIT 1", (status,))
        return row

    def _user_of_investor(self, tx: _Tx, investor_id: int) -> int | None:
        row = tx.read_one("SELECT user_id FROM public.investors WHERE id = %s", (investor_id,))
        return None if row is None else row[0]

    # ---- inserts shared by the seed and the actions ------------------------------------------

    def new_user(self, tx: _Tx, *, created_by: int | None, status: str = "active") -> int:
        first, last = self._person()
        email = f"{first}.{last}.{self._unique()}@example.com".lower()
        rows = tx.write(
            "users",
            "insert",
            "INSERT INTO public.users (email, full_name, password_hash, status, mfa_enabled,"
            " locale, created_by, updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (
                email,
                f"{first} {last}",
                f"$argon2id$v=19$m=65536,t=3,p=4${self._hex(256)}",
                status,
                self.rng.random() < 0.4,
                self.rng.choice(("en", "en", "de", "fr", "ja")),
                created_by,
                created_by,
            ),
        )
        return int(rows[0][0])

    def grant_role(
        self, tx: _Tx, user_id: int, role: str, *, org_id: int | None, created_by: int | None
    ) -> None:
        tx.write(
            "user_roles",
            "insert",
            "INSERT INTO public.user_roles (user_id, role, organization_id, created_by)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (user_id, role) DO NOTHING",
            (user_id, role, org_id, created_by),
        )

    def new_api_key(self, tx: _Tx, user_id: int, *, created_by: int | None) -> None:
        scopes = sorted(self.rng.sample(("read", "write", "subscriptions", "reports"), k=2))
        tx.write(
            "api_keys",
            "insert",
            "INSERT INTO public.api_keys (user_id, name, key_prefix, key_hash, scopes,"
            " expires_at, created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, now() + interval '1 year', %s, %s)",
            (
                user_id,
                self.rng.choice(("ci", "backoffice", "reporting", "integration")),
                f"ak_{self._unique()}",
                self._hex(256),
                scopes,
                created_by,
                created_by,
            ),
        )

    def new_investor(self, tx: _Tx, user_id: int | None, *, kind: str = "individual") -> int:
        first, last = self._person()
        country = self.rng.choice(_COUNTRIES)
        name = f"{first} {last}" if kind == "individual" else f"{last} Capital {self._unique()}"
        birth = None
        if kind == "individual":
            birth = f"{self.rng.randint(1950, 2003)}-{self.rng.randint(1, 12):02d}-15"
        rows = tx.write(
            "investors",
            "insert",
            "INSERT INTO public.investors (user_id, investor_type, legal_name, country, tax_id,"
            " date_of_birth, created_by, updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (
                user_id,
                kind,
                name,
                country,
                f"{country}{self.rng.randrange(10**8, 10**9)}",
                birth,
                user_id,
                user_id,
            ),
        )
        return int(rows[0][0])

    def new_wallet(self, tx: _Tx, investor_id: int, *, status: str, created_by: int | None) -> int:
        wallet_type = self.rng.choice(("custodial", "custodial", "self_custody", "multisig"))
        key_ref = f"vault://custody/{self._hex(64)}" if wallet_type == "custodial" else None
        rows = tx.write(
            "wallets",
            "insert",
            "INSERT INTO public.wallets (investor_id, chain, address, wallet_type,"
            " private_key_ref, status, whitelisted_at, created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s,"
            " CASE WHEN %s = 'whitelisted' THEN now() END, %s, %s) RETURNING id",
            (
                investor_id,
                self.rng.choice(_CHAINS),
                f"0x{self._hex(160)}",
                wallet_type,
                key_ref,
                status,
                status,
                created_by,
                created_by,
            ),
        )
        return int(rows[0][0])

    def new_kyc(self, tx: _Tx, investor_id: int, *, status: str, reviewer: int | None) -> int:
        reviewed = status in ("approved", "rejected")
        rows = tx.write(
            "kyc_verifications",
            "insert",
            "INSERT INTO public.kyc_verifications (investor_id, provider, provider_reference,"
            " level, document_type, document_number, status, result, reviewed_by, reviewed_at,"
            " expires_at, created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END,"
            " CASE WHEN %s THEN now() + interval '1 year' END, %s, %s) RETURNING id",
            (
                investor_id,
                self.rng.choice(_KYC_PROVIDERS),
                f"ref-{self._hex(48)}",
                self.rng.choice(("basic", "basic", "enhanced")),
                self.rng.choice(_DOCUMENT_TYPES),
                f"X{self.rng.randrange(10**7, 10**8)}",
                status,
                Jsonb({"liveness": "pass", "document": "verified"} if reviewed else {}),
                reviewer if reviewed else None,
                reviewed,
                status == "approved",
                reviewer,
                reviewer,
            ),
        )
        return int(rows[0][0])

    def new_check(
        self,
        tx: _Tx,
        check_type: str,
        *,
        status: str,
        investor_id: int | None = None,
        wallet_id: int | None = None,
        subscription_id: int | None = None,
        transfer_id: int | None = None,
    ) -> None:
        actor = self._actor()
        tx.write(
            "compliance_checks",
            "insert",
            "INSERT INTO public.compliance_checks (investor_id, wallet_id, subscription_id,"
            " token_transfer_id, check_type, provider, status, score, details, checked_at,"
            " created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " CASE WHEN %s <> 'pending' THEN now() END, %s, %s)",
            (
                investor_id,
                wallet_id,
                subscription_id,
                transfer_id,
                check_type,
                self.rng.choice(("internal", "chainalysis", "complyadvantage")),
                status,
                Decimal(self.rng.randint(0, 10000)) / 100,
                Jsonb({"rule_set": "2024.2"}),
                status,
                actor,
                actor,
            ),
        )

    def notify(
        self, tx: _Tx, user_id: int | None, kind: str, title: str, *, read: bool = False
    ) -> None:
        if user_id is None:
            return
        tx.write(
            "notifications",
            "insert",
            "INSERT INTO public.notifications (user_id, kind, title, body, status, read_at)"
            " VALUES (%s, %s, %s, %s, %s, CASE WHEN %s THEN now() END)",
            (
                user_id,
                kind,
                title,
                f"{title}. Open the platform for details.",
                "read" if read else "unread",
                read,
            ),
        )

    def new_organization(self, tx: _Tx, *, org_type: str, created_by: int | None) -> int:
        name = f"{self.rng.choice(_ASSET_WORDS)} {self.rng.choice(_LAST_NAMES)}"
        rows = tx.write(
            "organizations",
            "insert",
            "INSERT INTO public.organizations (name, legal_name, org_type, country,"
            " registration_number, status, created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, 'active', %s, %s) RETURNING id",
            (
                name,
                f"{name} Holdings Ltd",
                org_type,
                self.rng.choice(_COUNTRIES),
                f"REG-{self._unique()}",
                created_by,
                created_by,
            ),
        )
        return int(rows[0][0])

    def new_project(
        self, tx: _Tx, org_id: int, *, status: str, created_by: int | None
    ) -> tuple[int, int]:
        """A project with its token and prospectus; returns (project id, token id)."""
        unique = self._unique()
        name = f"{self.rng.choice(_ASSET_WORDS)} {self.rng.choice(_ASSET_WORDS)} {unique}"
        target = self._money(500_000, 50_000_000)
        rows = tx.write(
            "projects",
            "insert",
            "INSERT INTO public.projects (organization_id, name, slug, project_type, status,"
            " target_raise, min_investment, currency, opens_at, closes_at, metadata,"
            " created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
            " CASE WHEN %s IN ('fundraising', 'closed') THEN now() END,"
            " CASE WHEN %s IN ('fundraising', 'closed') THEN now() + interval '90 days' END,"
            " %s, %s, %s) RETURNING id",
            (
                org_id,
                name,
                name.lower().replace(" ", "-"),
                self.rng.choice(_PROJECT_TYPES),
                status,
                target,
                Decimal(self.rng.choice((1000, 5000, 10000))),
                self.rng.choice(_CURRENCIES),
                status,
                status,
                Jsonb({"risk_class": self.rng.randint(1, 7)}),
                created_by,
                created_by,
            ),
        )
        project_id = int(rows[0][0])
        deployed = status in ("fundraising", "closed")
        rows = tx.write(
            "tokens",
            "insert",
            "INSERT INTO public.tokens (project_id, symbol, name, standard, chain,"
            " contract_address, total_supply, status, created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                project_id,
                unique.upper(),
                f"{name} Token",
                self.rng.choice(("ERC-20", "ERC-1400", "ERC-3643", "ERC-3643")),
                self.rng.choice(_CHAINS),
                f"0x{self._hex(160)}" if deployed else None,
                target if deployed else Decimal(0),
                "deployed" if deployed else "draft",
                created_by,
                created_by,
            ),
        )
        self.new_document(
            tx,
            "prospectus",
            project_id=project_id,
            org_id=org_id,
            size_bytes=self._document_size(8_000, 160_000),
            status="published" if deployed else "draft",
            created_by=created_by,
        )
        return project_id, int(rows[0][0])

    def new_document(
        self,
        tx: _Tx,
        doc_type: str,
        *,
        size_bytes: int,
        status: str,
        created_by: int | None,
        project_id: int | None = None,
        org_id: int | None = None,
        investor_id: int | None = None,
    ) -> Any:
        content = self._text(size_bytes)
        data = content.encode()
        title = f"{doc_type.replace('_', ' ').title()} {self._unique()}"
        rows = tx.write(
            "documents",
            "insert",
            "INSERT INTO public.documents (organization_id, project_id, investor_id, doc_type,"
            " title, file_name, mime_type, size_bytes, sha256, content, status,"
            " created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'text/plain', %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (
                org_id,
                project_id,
                investor_id,
                doc_type,
                title,
                f"{title.lower().replace(' ', '_')}.txt",
                len(data),
                hashlib.sha256(data).hexdigest(),
                content,
                status,
                created_by,
                created_by,
            ),
        )
        return rows[0][0]

    def new_subscription(
        self,
        tx: _Tx,
        investor_id: int,
        project_id: int,
        token_id: int | None,
        *,
        status: str,
        created_by: int | None,
    ) -> tuple[int, Decimal]:
        amount = self._money(1_000, 250_000)
        rows = tx.write(
            "subscriptions",
            "insert",
            "INSERT INTO public.subscriptions (investor_id, project_id, token_id, amount,"
            " currency, token_amount, status, payment_reference, approved_at,"
            " created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, 'USD', %s, %s, %s,"
            " CASE WHEN %s IN ('approved', 'allocated') THEN now() END, %s, %s) RETURNING id",
            (
                investor_id,
                project_id,
                token_id,
                amount,
                amount,
                status,
                f"PAY-{self._unique()}",
                status,
                created_by,
                created_by,
            ),
        )
        return int(rows[0][0]), amount

    def new_approval(
        self, tx: _Tx, entity_type: str, entity_id: int, action: str, *, status: str = "pending"
    ) -> None:
        requested_by = self._actor()
        decided_by = self._actor() if status != "pending" else None
        tx.write(
            "approvals",
            "insert",
            "INSERT INTO public.approvals (entity_type, entity_id, action, status, requested_by,"
            " decided_by, decided_at, created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, CASE WHEN %s <> 'pending' THEN now() END, %s, %s)",
            (
                entity_type,
                entity_id,
                action,
                status,
                requested_by,
                decided_by,
                status,
                requested_by,
                decided_by or requested_by,
            ),
        )

    def decide_approvals(self, tx: _Tx, entity_type: str, entity_id: int, status: str) -> None:
        actor = self._actor()
        tx.write(
            "approvals",
            "update",
            "UPDATE public.approvals SET status = %s, decided_by = %s, decided_at = now(),"
            " updated_by = %s WHERE entity_type = %s AND entity_id = %s AND status = 'pending'",
            (status, actor, actor, entity_type, entity_id),
        )

    def new_allocation(
        self,
        tx: _Tx,
        token_id: int,
        investor_id: int,
        wallet_id: int | None,
        subscription_id: int | None,
        amount: Decimal,
        *,
        status: str,
    ) -> int:
        actor = self._actor()
        rows = tx.write(
            "token_allocations",
            "insert",
            "INSERT INTO public.token_allocations (token_id, investor_id, wallet_id,"
            " subscription_id, amount, status, lockup_until, created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s,"
            " CASE WHEN %s = 'locked' THEN now() + interval '180 days' END, %s, %s)"
            " RETURNING id",
            (
                token_id,
                investor_id,
                wallet_id,
                subscription_id,
                amount,
                status,
                status,
                actor,
                actor,
            ),
        )
        return int(rows[0][0])

    def new_distribution(self, tx: _Tx, token_id: int, allocation: Sequence[Any]) -> int:
        allocation_id, investor_id, wallet_id, amount = allocation
        actor = self._actor()
        rows = tx.write(
            "distributions",
            "insert",
            "INSERT INTO public.distributions (token_id, investor_id, wallet_id, allocation_id,"
            " distribution_type, amount, currency, record_date, scheduled_for,"
            " created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'USD', current_date, now() + interval '1 day',"
            " %s, %s) RETURNING id",
            (
                token_id,
                investor_id,
                wallet_id,
                allocation_id,
                self.rng.choice(("dividend", "interest", "coupon", "return_of_capital")),
                max(_scaled(amount, self.rng.randint(1, 4)), _MICRO),
                actor,
                actor,
            ),
        )
        return int(rows[0][0])

    # ---- the workload's transactions ---------------------------------------------------------

    def register_user(self, tx: _Tx) -> bool:
        """Sign-up: user, investor role, investor profile, welcome notification (4-5)."""
        user_id = self.new_user(tx, created_by=None)
        self.grant_role(tx, user_id, "investor", org_id=None, created_by=user_id)
        investor_id = self.new_investor(tx, user_id)
        self.notify(tx, user_id, "system", "Welcome to the platform")
        if self.rng.random() < 0.3:
            self.new_wallet(tx, investor_id, status="pending", created_by=user_id)
        return True

    def touch_user(self, tx: _Tx) -> bool:
        """A request from a signed-in user: only last_seen_at (and updated_at) change (1)."""
        row = self._pick(tx, "users", where="status = 'active'")
        if row is None:
            return False
        tx.write(
            "users",
            "update",
            "UPDATE public.users SET last_seen_at = now() WHERE id = %s",
            (row[0],),
        )
        return True

    def use_api_key(self, tx: _Tx) -> bool:
        """An API call: only last_used_at (and updated_at) change (1)."""
        row = self._pick(tx, "api_keys", where="status = 'active'")
        if row is None:
            return False
        tx.write(
            "api_keys",
            "update",
            "UPDATE public.api_keys SET last_used_at = now() WHERE id = %s",
            (row[0],),
        )
        return True

    def touch_record(self, tx: _Tx) -> bool:
        """A save without changes: the BEFORE trigger moves updated_at only (1)."""
        tables: tuple[LiteralString, ...] = ("projects", "tokens", "organizations", "investors")
        table = self.rng.choice(tables)
        row = self._pick(tx, table)
        if row is None:
            return False
        query = sql.SQL("UPDATE public.{} SET updated_at = now() WHERE id = %s").format(
            sql.Identifier(table)
        )
        tx.write(table, "update", query, (row[0],))
        return True

    def submit_kyc(self, tx: _Tx) -> bool:
        """KYC submitted: verification, investor status, sometimes evidence (2-3)."""
        row = self._pick(
            tx, "investors", "id, user_id", "kyc_status IN ('not_started', 'rejected', 'expired')"
        )
        if row is None:
            return False
        investor_id, user_id = row
        self.new_kyc(tx, investor_id, status="pending", reviewer=None)
        tx.write(
            "investors",
            "update",
            "UPDATE public.investors SET kyc_status = 'pending', updated_by = %s WHERE id = %s",
            (user_id, investor_id),
        )
        if self.rng.random() < 0.3:
            self.new_document(
                tx,
                "kyc_evidence",
                investor_id=investor_id,
                size_bytes=2_500,
                status="draft",
                created_by=user_id,
            )
        return True

    def review_kyc(self, tx: _Tx) -> bool:
        """KYC decided: verification, investor, sanctions check, notification (4)."""
        row = self._pick(
            tx, "kyc_verifications", "id, investor_id", "status IN ('pending', 'in_review')"
        )
        if row is None:
            return False
        kyc_id, investor_id = row
        approved = self.rng.random() < 0.85
        status = "approved" if approved else "rejected"
        reviewer = self._actor()
        done = tx.write(
            "kyc_verifications",
            "update",
            "UPDATE public.kyc_verifications SET status = %s, reviewed_by = %s,"
            " reviewed_at = now(), expires_at = now() + interval '1 year', result = %s,"
            " updated_by = %s WHERE id = %s AND status IN ('pending', 'in_review') RETURNING id",
            (status, reviewer, Jsonb({"liveness": "pass", "decision": status}), reviewer, kyc_id),
        )
        if not done:
            return True
        tx.write(
            "investors",
            "update",
            "UPDATE public.investors SET kyc_status = %s, risk_rating = %s, updated_by = %s"
            " WHERE id = %s",
            (status, self.rng.choice(("low", "low", "medium", "high")), reviewer, investor_id),
        )
        self.new_check(
            tx, "sanctions", status="passed" if approved else "failed", investor_id=investor_id
        )
        user_id = self._user_of_investor(tx, investor_id)
        self.notify(tx, user_id, "kyc", f"Your identity verification was {status}")
        return True

    def add_wallet(self, tx: _Tx) -> bool:
        """A new wallet, screened and whitelisted (3)."""
        row = self._pick(tx, "investors", "id, user_id", "kyc_status = 'approved'")
        if row is None:
            return False
        investor_id, user_id = row
        wallet_id = self.new_wallet(tx, investor_id, status="pending", created_by=user_id)
        self.new_check(tx, "wallet_screening", status="passed", wallet_id=wallet_id)
        actor = self._actor()
        tx.write(
            "wallets",
            "update",
            "UPDATE public.wallets SET status = 'whitelisted', whitelisted_at = now(),"
            " updated_by = %s WHERE id = %s",
            (actor, wallet_id),
        )
        return True

    def subscribe(self, tx: _Tx) -> bool:
        """An investor subscribes: subscription, approval request, notification, sometimes
        the signed agreement (3-4)."""
        investor = self._pick(tx, "investors", "id, user_id", "kyc_status = 'approved'")
        project = self._pick(tx, "projects", "id", "status = 'fundraising'")
        if investor is None or project is None:
            return False
        investor_id, user_id = investor
        token = tx.read_one(
            "SELECT id FROM public.tokens WHERE project_id = %s AND status = 'deployed'"
            " ORDER BY id LIMIT 1",
            (project[0],),
        )
        subscription_id, _ = self.new_subscription(
            tx,
            investor_id,
            project[0],
            None if token is None else token[0],
            status="pending",
            created_by=user_id,
        )
        self.new_approval(tx, "subscription", subscription_id, "subscription.approve")
        self.notify(tx, user_id, "subscription", "Subscription received")
        if self.rng.random() < 0.25:
            self.new_document(
                tx,
                "subscription_agreement",
                project_id=project[0],
                investor_id=investor_id,
                size_bytes=self._document_size(4_000, 32_000),
                status="published",
                created_by=user_id,
            )
        return True

    def decide_subscription(self, tx: _Tx) -> bool:
        """Subscription pending -> approved/rejected, its approval, AML check, notice (4)."""
        row = self._pick(tx, "subscriptions", "id, investor_id", "status = 'pending'")
        if row is None:
            return False
        subscription_id, investor_id = row
        status = "approved" if self.rng.random() < 0.9 else "rejected"
        actor = self._actor()
        done = tx.write(
            "subscriptions",
            "update",
            "UPDATE public.subscriptions SET status = %s,"
            " approved_at = CASE WHEN %s = 'approved' THEN now() END, updated_by = %s"
            " WHERE id = %s AND status = 'pending' RETURNING id",
            (status, status, actor, subscription_id),
        )
        if not done:
            return True
        self.decide_approvals(tx, "subscription", subscription_id, status)
        self.new_check(
            tx,
            "aml",
            status="passed" if status == "approved" else "failed",
            investor_id=investor_id,
            subscription_id=subscription_id,
        )
        user_id = self._user_of_investor(tx, investor_id)
        self.notify(tx, user_id, "subscription", f"Your subscription was {status}")
        return True

    def allocate_tokens(self, tx: _Tx) -> bool:
        """Approved subscription -> allocated, tokens minted to the investor's wallet, sometimes
        the supply raised (2-4)."""
        row = self._pick(tx, "subscriptions", "id", "status = 'approved' AND token_id IS NOT NULL")
        if row is None:
            return False
        actor = self._actor()
        done = tx.write(
            "subscriptions",
            "update",
            "UPDATE public.subscriptions SET status = 'allocated', updated_by = %s"
            " WHERE id = %s AND status = 'approved' RETURNING investor_id, token_id, token_amount",
            (actor, row[0]),
        )
        if not done:
            return True
        investor_id, token_id, token_amount = done[0]
        wallet = tx.read_one(
            "SELECT id FROM public.wallets WHERE investor_id = %s AND status = 'whitelisted'"
            " ORDER BY id LIMIT 1",
            (investor_id,),
        )
        if wallet is None:
            wallet_id = self.new_wallet(tx, investor_id, status="whitelisted", created_by=actor)
        else:
            wallet_id = wallet[0]
        status = "locked" if self.rng.random() < 0.2 else "minted"
        self.new_allocation(
            tx, token_id, investor_id, wallet_id, row[0], token_amount, status=status
        )
        if self.rng.random() < 0.3:
            tx.write(
                "tokens",
                "update",
                "UPDATE public.tokens SET total_supply = total_supply + %s, updated_by = %s"
                " WHERE id = %s",
                (token_amount, actor, token_id),
            )
        return True

    def transfer_tokens(self, tx: _Tx) -> bool:
        """A token transfer: request, restriction check, submission in a savepoint (rolled back
        when the chain rejects it), then the balances move (3-6)."""
        source = self._pick(
            tx,
            "token_allocations",
            "id, token_id, wallet_id, amount",
            "status IN ('minted', 'released') AND amount > 0 AND wallet_id IS NOT NULL",
        )
        target = self._pick(
            tx, "wallets", "id, investor_id", "status = 'whitelisted' AND investor_id IS NOT NULL"
        )
        if source is None or target is None or source[2] == target[0]:
            return False
        allocation_id, token_id, from_wallet, balance = source
        to_wallet, to_investor = target
        amount = _scaled(balance, self.rng.randint(1, 50))
        if amount <= 0:
            return False
        actor = self._actor()
        rows = tx.write(
            "token_transfers",
            "insert",
            "INSERT INTO public.token_transfers (token_id, from_wallet_id, to_wallet_id,"
            " from_allocation_id, amount, created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (token_id, from_wallet, to_wallet, allocation_id, amount, actor, actor),
        )
        transfer_id = rows[0][0]
        self.new_check(
            tx,
            "transfer_restriction",
            status="passed",
            wallet_id=to_wallet,
            transfer_id=transfer_id,
        )
        tx.savepoint()
        tx.write(
            "token_transfers",
            "update",
            "UPDATE public.token_transfers SET status = 'submitted', tx_hash = %s WHERE id = %s",
            (f"0x{self._hex(256)}", transfer_id),
        )
        if self.rng.random() < TRANSFER_FAILURE_RATIO:
            tx.rollback_to_savepoint()
            tx.write(
                "token_transfers",
                "update",
                "UPDATE public.token_transfers SET status = 'failed',"
                " failure_reason = 'gas estimation failed' WHERE id = %s",
                (transfer_id,),
            )
            return True
        tx.release_savepoint()
        debited = tx.write(
            "token_allocations",
            "update",
            "UPDATE public.token_allocations SET amount = amount - %s, updated_by = %s"
            " WHERE id = %s AND amount >= %s RETURNING id",
            (amount, actor, allocation_id, amount),
        )
        if not debited:
            tx.write(
                "token_transfers",
                "update",
                "UPDATE public.token_transfers SET status = 'rejected',"
                " failure_reason = 'insufficient balance' WHERE id = %s",
                (transfer_id,),
            )
            return True
        tx.write(
            "token_transfers",
            "update",
            "UPDATE public.token_transfers SET status = 'confirmed', block_number = %s"
            " WHERE id = %s",
            (self.rng.randrange(18_000_000, 21_000_000), transfer_id),
        )
        self.new_allocation(tx, token_id, to_investor, to_wallet, None, amount, status="released")
        return True

    def schedule_distribution(self, tx: _Tx) -> bool:
        """A payout run for up to 3 holders of a token, and its release approval (2-4)."""
        first = self._pick(
            tx,
            "token_allocations",
            "id, token_id",
            "amount > 0 AND status IN ('minted', 'locked', 'released')",
        )
        if first is None:
            return False
        holders = tx.read(
            "SELECT id, investor_id, wallet_id, amount FROM public.token_allocations"
            " WHERE token_id = %s AND amount > 0 AND status IN ('minted', 'locked', 'released')"
            " AND id >= %s ORDER BY id LIMIT %s",
            (first[1], first[0], self.rng.randint(1, 3)),
        )
        if not holders:  # moved on since it was picked (another client)
            return True
        ids = [self.new_distribution(tx, first[1], holder) for holder in holders]
        self.new_approval(tx, "distribution", ids[0], "distribution.release")
        return True

    def pay_distribution(self, tx: _Tx) -> bool:
        """A scheduled payout goes processing -> paid (or failed), approval, notice (2-4)."""
        row = self._pick(tx, "distributions", "id, investor_id", "status = 'scheduled'")
        if row is None:
            return False
        distribution_id, investor_id = row
        actor = self._actor()
        done = tx.write(
            "distributions",
            "update",
            "UPDATE public.distributions SET status = 'processing', updated_by = %s"
            " WHERE id = %s AND status = 'scheduled' RETURNING id",
            (actor, distribution_id),
        )
        if not done:
            return True
        paid = self.rng.random() < 0.9
        tx.write(
            "distributions",
            "update",
            "UPDATE public.distributions SET status = %s,"
            " paid_at = CASE WHEN %s THEN now() END, tx_hash = %s WHERE id = %s",
            (
                "paid" if paid else "failed",
                paid,
                f"0x{self._hex(256)}" if paid else None,
                distribution_id,
            ),
        )
        self.decide_approvals(tx, "distribution", distribution_id, "approved")
        if paid:
            user_id = self._user_of_investor(tx, investor_id)
            self.notify(tx, user_id, "distribution", "A distribution was paid to your wallet")
        return True

    def request_redemption(self, tx: _Tx) -> bool:
        """An investor asks to redeem part of a holding, and the approval request (2)."""
        row = self._pick(
            tx,
            "token_allocations",
            "id, token_id, investor_id, wallet_id, amount",
            "status IN ('minted', 'released') AND amount > 0",
        )
        if row is None:
            return False
        allocation_id, token_id, investor_id, wallet_id, balance = row
        token_amount = _scaled(balance, self.rng.randint(5, 60))
        if token_amount <= 0:
            return False
        user_id = self._user_of_investor(tx, investor_id)
        rows = tx.write(
            "redemptions",
            "insert",
            "INSERT INTO public.redemptions (token_id, investor_id, allocation_id, wallet_id,"
            " token_amount, payout_amount, currency, created_by, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'USD', %s, %s) RETURNING id",
            (
                token_id,
                investor_id,
                allocation_id,
                wallet_id,
                token_amount,
                _scaled(token_amount, self.rng.randint(95, 110)),
                user_id,
                user_id,
            ),
        )
        self.new_approval(tx, "redemption", rows[0][0], "redemption.approve")
        return True

    def settle_redemption(self, tx: _Tx) -> bool:
        """Redemption requested -> approved -> settled (or rejected), approval, burn (4)."""
        row = self._pick(
            tx, "redemptions", "id, allocation_id, token_amount", "status = 'requested'"
        )
        if row is None:
            return False
        redemption_id, allocation_id, token_amount = row
        actor = self._actor()
        done = tx.write(
            "redemptions",
            "update",
            "UPDATE public.redemptions SET status = 'approved', updated_by = %s"
            " WHERE id = %s AND status = 'requested' RETURNING id",
            (actor, redemption_id),
        )
        if not done:
            return True
        self.decide_approvals(tx, "redemption", redemption_id, "approved")
        burned = tx.write(
            "token_allocations",
            "update",
            "UPDATE public.token_allocations SET amount = amount - %s, updated_by = %s"
            " WHERE id = %s AND amount >= %s RETURNING id",
            (token_amount, actor, allocation_id, token_amount),
        )
        if burned:
            tx.write(
                "redemptions",
                "update",
                "UPDATE public.redemptions SET status = 'settled', settled_at = now()"
                " WHERE id = %s",
                (redemption_id,),
            )
        else:
            tx.write(
                "redemptions",
                "update",
                "UPDATE public.redemptions SET status = 'rejected',"
                " reason = 'insufficient balance' WHERE id = %s",
                (redemption_id,),
            )
        return True

    def upload_document(self, tx: _Tx) -> bool:
        """A large document (3 KB-200 KB of text: TOASTed), sometimes published at once (1-2)."""
        row = self._pick(tx, "projects", "id, organization_id")
        if row is None:
            return False
        actor = self._actor()
        doc_id = self.new_document(
            tx,
            self.rng.choice(("investor_report", "term_sheet", "prospectus", "other")),
            project_id=row[0],
            org_id=row[1],
            size_bytes=self._document_size(3_000, 200_000),
            status="draft",
            created_by=actor,
        )
        if self.rng.random() < 0.5:
            tx.write(
                "documents",
                "update",
                "UPDATE public.documents SET status = 'published', updated_by = %s WHERE id = %s",
                (actor, doc_id),
            )
        return True

    def edit_document(self, tx: _Tx) -> bool:
        """Title and version of a published document change; its large content does not (1)."""
        row = self._pick_document(tx, "published")
        if row is None:
            return False
        actor = self._actor()
        tx.write(
            "documents",
            "update",
            "UPDATE public.documents SET title = %s, version = version + 1,"
            " metadata = metadata || %s, updated_by = %s WHERE id = %s",
            (f"Revised {self._unique()}", Jsonb({"reviewed": True}), actor, row[0]),
        )
        return True

    def delete_document(self, tx: _Tx) -> bool:
        """A draft document is deleted (1)."""
        row = self._pick_document(tx, "draft")
        if row is None:
            return False
        tx.write(
            "documents",
            "delete",
            "DELETE FROM public.documents WHERE id = %s AND status = 'draft'",
            (row[0],),
        )
        return True

    def read_notification(self, tx: _Tx) -> bool:
        """A notification is read (1)."""
        row = self._pick(tx, "notifications", where="status = 'unread'")
        if row is None:
            return False
        tx.write(
            "notifications",
            "update",
            "UPDATE public.notifications SET status = 'read', read_at = now() WHERE id = %s",
            (row[0],),
        )
        return True

    def delete_notifications(self, tx: _Tx) -> bool:
        """A user clears up to 3 read notifications (1-3)."""
        row = self._pick(tx, "notifications", "id, user_id", "status IN ('read', 'archived')")
        if row is None:
            return False
        tx.write(
            "notifications",
            "delete",
            "DELETE FROM public.notifications WHERE id IN (SELECT id FROM public.notifications"
            " WHERE user_id = %s AND status IN ('read', 'archived') ORDER BY id LIMIT %s)",
            (row[1], self.rng.randint(1, 3)),
        )
        return True

    def change_roles(self, tx: _Tx) -> bool:
        """A viewer/analyst role is granted (0-1: it may exist) or revoked (1-2)."""
        if self.rng.random() < 0.5:
            row = self._pick(tx, "users", where="status = 'active'")
            if row is None:
                return False
            role = self.rng.choice(("viewer", "analyst"))
            self.grant_role(tx, row[0], role, org_id=None, created_by=self._actor())
        else:
            row = self._pick(
                tx,
                "users",
                where="EXISTS (SELECT FROM public.user_roles r WHERE"
                " r.user_id = users.id AND r.role IN ('viewer', 'analyst'))",
            )
            if row is None:
                return False
            tx.write(
                "user_roles",
                "delete",
                "DELETE FROM public.user_roles"
                " WHERE user_id = %s AND role IN ('viewer', 'analyst')",
                (row[0],),
            )
        return True

    def rotate_api_key(self, tx: _Tx) -> bool:
        """An API key is revoked and replaced; sometimes an old revoked key is deleted (2-3)."""
        row = self._pick(tx, "api_keys", "id, user_id", "status = 'active'")
        if row is None:
            return False
        actor = self._actor()
        done = tx.write(
            "api_keys",
            "update",
            "UPDATE public.api_keys SET status = 'revoked', revoked_at = now(), updated_by = %s"
            " WHERE id = %s AND status = 'active' RETURNING id",
            (actor, row[0]),
        )
        if not done:
            return True
        self.new_api_key(tx, row[1], created_by=actor)
        if self.rng.random() < 0.3:
            old = self._pick(tx, "api_keys", where="status = 'revoked'")
            if old is not None and old[0] != row[0]:
                tx.write(
                    "api_keys",
                    "delete",
                    "DELETE FROM public.api_keys WHERE id = %s AND status = 'revoked'",
                    (old[0],),
                )
        return True

    def launch_project(self, tx: _Tx) -> bool:
        """A new project in review: sometimes a new issuer, project, token, prospectus, and its
        publication approval (4-5)."""
        actor = self._actor()
        org = self._pick(tx, "organizations", where="status = 'active' AND org_type = 'issuer'")
        if org is None or self.rng.random() < 0.3:
            org_id = self.new_organization(tx, org_type="issuer", created_by=actor)
        else:
            org_id = org[0]
        project_id, _ = self.new_project(tx, org_id, status="review", created_by=actor)
        self.new_approval(tx, "project", project_id, "project.publish")
        return True

    def publish_project(self, tx: _Tx) -> bool:
        """Approval of a project in review: approval, project, token deployed (3)."""
        row = self._pick(
            tx, "approvals", "id, entity_id", "entity_type = 'project' AND status = 'pending'"
        )
        if row is None:
            return False
        actor = self._actor()
        done = tx.write(
            "approvals",
            "update",
            "UPDATE public.approvals SET status = 'approved', decided_by = %s,"
            " decided_at = now(), updated_by = %s WHERE id = %s AND status = 'pending'"
            " RETURNING id",
            (actor, actor, row[0]),
        )
        if not done:
            return True
        tx.write(
            "projects",
            "update",
            "UPDATE public.projects SET status = 'fundraising', opens_at = now(),"
            " closes_at = now() + interval '90 days', updated_by = %s WHERE id = %s",
            (actor, row[1]),
        )
        tx.write(
            "tokens",
            "update",
            "UPDATE public.tokens SET status = 'deployed', contract_address = %s,"
            " updated_by = %s WHERE project_id = %s AND status = 'draft'",
            (f"0x{self._hex(160)}", actor, row[1]),
        )
        return True

    def mint_tokens(self, tx: _Tx) -> bool:
        """The supply of a deployed token is raised, with its (approved) approval (2)."""
        row = self._pick(tx, "tokens", where="status = 'deployed'")
        if row is None:
            return False
        actor = self._actor()
        tx.write(
            "tokens",
            "update",
            "UPDATE public.tokens SET total_supply = total_supply + %s, updated_by = %s"
            " WHERE id = %s",
            (self._money(1_000, 1_000_000), actor, row[0]),
        )
        self.new_approval(tx, "token", row[0], "token.mint", status="approved")
        return True

    def review_compliance(self, tx: _Tx) -> bool:
        """An open compliance check is decided, or a periodic re-screening is queued (1)."""
        if self.rng.random() < 0.4:
            investor = self._pick(tx, "investors", where="kyc_status = 'approved'")
            if investor is None:
                return False
            status = self.rng.choice(("pending", "needs_review"))
            self.new_check(tx, "pep", status=status, investor_id=investor[0])
            return True
        row = self._pick(tx, "compliance_checks", where="status IN ('pending', 'needs_review')")
        if row is None:
            return False
        actor = self._actor()
        tx.write(
            "compliance_checks",
            "update",
            "UPDATE public.compliance_checks SET status = %s, checked_at = now(), score = %s,"
            " updated_by = %s WHERE id = %s",
            (
                self.rng.choice(("passed", "passed", "failed")),
                Decimal(self.rng.randint(0, 10000)) / 100,
                actor,
                row[0],
            ),
        )
        return True

    def update_investor_profile(self, tx: _Tx) -> bool:
        """An investor edits preferences; jsonb metadata and risk rating change (1)."""
        row = self._pick(tx, "investors", "id, user_id")
        if row is None:
            return False
        tx.write(
            "investors",
            "update",
            "UPDATE public.investors SET metadata = metadata || %s, risk_rating = %s,"
            " updated_by = %s WHERE id = %s",
            (
                Jsonb({"newsletter": self.rng.random() < 0.5, "tax_residency_confirmed": True}),
                self.rng.choice(("low", "medium", "high")),
                row[1],
                row[0],
            ),
        )
        return True

    # ---- seeding -----------------------------------------------------------------------------

    def seed(self, tx: _Tx, scale: int) -> None:
        """Staff, issuers with projects and tokens, investors in every onboarding state,
        subscriptions in every state, holdings, payouts, notifications and API keys."""
        admin = self.new_user(tx, created_by=None)
        self.grant_role(tx, admin, "admin", org_id=None, created_by=None)
        self.staff = [admin]
        for role in ("compliance_officer", "compliance_officer", "operator", "operator"):
            user_id = self.new_user(tx, created_by=admin)
            self.grant_role(tx, user_id, role, org_id=None, created_by=admin)
            self.staff.append(user_id)
        for user_id in self.staff:
            self.new_api_key(tx, user_id, created_by=admin)

        fundraising: list[tuple[int, int]] = []
        for _ in range(2 * scale):
            org_id = self.new_organization(tx, org_type="issuer", created_by=admin)
            issuer = self.new_user(tx, created_by=admin)
            self.grant_role(tx, issuer, "issuer", org_id=org_id, created_by=admin)
            self.new_api_key(tx, issuer, created_by=admin)
            for status in ("fundraising", self.rng.choice(("review", "fundraising", "closed"))):
                project_id, token_id = self.new_project(
                    tx, org_id, status=status, created_by=issuer
                )
                if status == "review":
                    self.new_approval(tx, "project", project_id, "project.publish")
                if status == "fundraising":
                    fundraising.append((project_id, token_id))

        for number in range(20 * scale):
            user_id = self.new_user(tx, created_by=None)
            self.grant_role(tx, user_id, "investor", org_id=None, created_by=user_id)
            kind = "individual" if number % 7 else self.rng.choice(("institution", "fund"))
            investor_id = self.new_investor(tx, user_id, kind=kind)
            self.notify(tx, user_id, "system", "Welcome to the platform", read=True)
            onboarding = self.rng.random()
            if onboarding < 0.7:
                self._seed_active_investor(tx, investor_id, user_id, fundraising)
            elif onboarding < 0.85:
                self.new_kyc(tx, investor_id, status="pending", reviewer=None)
                tx.write(
                    "investors",
                    "update",
                    "UPDATE public.investors SET kyc_status = 'pending' WHERE id = %s",
                    (investor_id,),
                )

    def _seed_active_investor(
        self, tx: _Tx, investor_id: int, user_id: int, fundraising: Sequence[tuple[int, int]]
    ) -> None:
        reviewer = self._actor()
        self.new_kyc(tx, investor_id, status="approved", reviewer=reviewer)
        tx.write(
            "investors",
            "update",
            "UPDATE public.investors SET kyc_status = 'approved',"
            " accreditation_status = 'accredited', risk_rating = 'low', updated_by = %s"
            " WHERE id = %s",
            (reviewer, investor_id),
        )
        self.new_check(
            tx,
            "sanctions",
            status=self.rng.choice(("passed", "passed", "passed", "needs_review")),
            investor_id=investor_id,
        )
        wallet_id = self.new_wallet(tx, investor_id, status="whitelisted", created_by=user_id)
        self.notify(tx, user_id, "kyc", "Your identity verification was approved")
        for _ in range(self.rng.randint(1, 2)):
            project_id, token_id = self.rng.choice(fundraising)
            status = self.rng.choice(("pending", "approved", "allocated", "allocated"))
            subscription_id, amount = self.new_subscription(
                tx, investor_id, project_id, token_id, status=status, created_by=user_id
            )
            self.new_approval(
                tx,
                "subscription",
                subscription_id,
                "subscription.approve",
                status="pending" if status == "pending" else "approved",
            )
            if status != "allocated":
                continue
            allocation_id = self.new_allocation(
                tx, token_id, investor_id, wallet_id, subscription_id, amount, status="minted"
            )
            if self.rng.random() < 0.3:
                self.new_distribution(tx, token_id, (allocation_id, investor_id, wallet_id, amount))


# -------------------------------------------------------------------------------------------------
# Seeding and running
# -------------------------------------------------------------------------------------------------

_Action = Callable[[_Platform, _Tx], bool]

#: The mix: (action, weight). Weights are relative; see docs/demo-platform.md.
WORKLOAD_MIX: tuple[tuple[_Action, int], ...] = (
    (_Platform.register_user, 6),
    (_Platform.touch_user, 8),
    (_Platform.use_api_key, 4),
    (_Platform.touch_record, 2),
    (_Platform.submit_kyc, 5),
    (_Platform.review_kyc, 5),
    (_Platform.add_wallet, 3),
    (_Platform.subscribe, 9),
    (_Platform.decide_subscription, 8),
    (_Platform.allocate_tokens, 6),
    (_Platform.transfer_tokens, 7),
    (_Platform.schedule_distribution, 3),
    (_Platform.pay_distribution, 5),
    (_Platform.request_redemption, 3),
    (_Platform.settle_redemption, 3),
    (_Platform.upload_document, 4),
    (_Platform.edit_document, 2),
    (_Platform.delete_document, 1),
    (_Platform.read_notification, 4),
    (_Platform.delete_notifications, 4),
    (_Platform.change_roles, 2),
    (_Platform.rotate_api_key, 2),
    (_Platform.launch_project, 1),
    (_Platform.publish_project, 1),
    (_Platform.mint_tokens, 2),
    (_Platform.review_compliance, 3),
    (_Platform.update_investor_profile, 2),
)
_ACTIONS = tuple(action for action, _ in WORKLOAD_MIX)
_WEIGHTS = tuple(weight for _, weight in WORKLOAD_MIX)
# Small actions run inside an extra savepoint, then rolled back or released.
_SAVEPOINT_ACTIONS: tuple[_Action, ...] = (
    _Platform.touch_user,
    _Platform.read_notification,
    _Platform.update_investor_profile,
    _Platform.submit_kyc,
)


def _unique_tag(tx: _Tx) -> str:
    """A tag no other run gets: a value of the users id sequence (a gap in ids, nothing else)."""
    row = tx.read_one("SELECT nextval(pg_get_serial_sequence('public.users', 'id'))")
    return f"w{row[0]}"


def _staff(tx: _Tx) -> list[int]:
    rows = tx.read(
        "SELECT DISTINCT user_id FROM public.user_roles WHERE role = ANY(%s) ORDER BY user_id",
        (list(_STAFF_ROLES),),
    )
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
        tx = _Tx(conn)
        platform = _Platform(rng, _unique_tag(tx), [])
        platform.seed(tx, scale)
    truth = GroundTruth(counts=Counter(tx.counts), committed=1)
    log.debug("demo platform seeded: %d row changes (scale %d)", truth.total(), scale)
    return truth


class _Client:
    """One connection running transactions one after another, until its budget, the deadline
    or the stop event; it reconnects when the connection breaks."""

    def __init__(
        self,
        dsn: str,
        index: int,
        *,
        rng: random.Random,
        budget: int | None,
        deadline: float | None,
        rollback_ratio: float,
        stop: threading.Event,
    ) -> None:
        self.dsn = dsn
        self.index = index
        self.rng = rng
        self.budget = budget
        self.deadline = deadline
        self.rollback_ratio = rollback_ratio
        self.stop = stop
        self.truth = GroundTruth()
        self.platform: _Platform | None = None

    def _ending(self) -> bool:
        return self.stop.is_set() or (
            self.deadline is not None and time.monotonic() >= self.deadline
        )

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.dsn,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=f"cdc-demo-workload-{self.index}",
        )
        try:
            # An acknowledged commit must survive a killed server, or the ground truth would
            # count changes that are gone (the server may default to synchronous_commit=off).
            conn.execute("SET synchronous_commit TO on")
            conn.commit()
            if self.platform is None:
                with conn.transaction():
                    tx = _Tx(conn)
                    self.platform = _Platform(self.rng, _unique_tag(tx), _staff(tx))
        except BaseException:
            conn.close()
            raise
        return conn

    def _reconnect(self) -> psycopg.Connection[Any] | None:
        give_up = time.monotonic() + RECONNECT_GIVE_UP_S
        delay = 0.05
        while not self._ending():
            try:
                return self._connect()
            except psycopg.Error as exc:
                if time.monotonic() >= give_up:
                    message = (
                        f"client {self.index}: no connection for {RECONNECT_GIVE_UP_S}s: {exc}"
                    )
                    log.error("%s", message)
                    self.truth.errors.append(message)
                    return None
                log.debug("client %d cannot reconnect yet: %s", self.index, exc)
            self.stop.wait(delay)
            delay = min(delay * 2, 1.0)
        return None

    def _recover(self, conn: psycopg.Connection[Any]) -> psycopg.Connection[Any] | None:
        if not (conn.closed or conn.broken):
            try:
                conn.rollback()
                return conn
            except psycopg.Error:
                pass
        conn.close()
        return self._reconnect()

    def run(self) -> GroundTruth:
        try:
            conn: psycopg.Connection[Any] | None = self._connect()
        except psycopg.Error:
            conn = self._reconnect()
        attempts = 0
        try:
            while conn is not None and not self._ending():
                if self.budget is not None and attempts >= self.budget:
                    break
                attempts += 1
                conn = self._transaction(conn)
        finally:
            if conn is not None:
                conn.close()
        return self.truth

    def _transaction(self, conn: psycopg.Connection[Any]) -> psycopg.Connection[Any] | None:
        """Run one transaction; returns the connection to go on with (None: give up)."""
        assert self.platform is not None
        platform, truth = self.platform, self.truth
        action = self.rng.choices(_ACTIONS, weights=_WEIGHTS)[0]
        rollback = self.rng.random() < self.rollback_ratio
        extra = self.rng.random()
        tx = _Tx(conn)
        try:
            if not action(platform, tx):
                platform.register_user(tx)
            if extra < SAVEPOINT_RATIO:
                tx.savepoint()
                self.rng.choice(_SAVEPOINT_ACTIONS)(platform, tx)
                if extra < SAVEPOINT_RATIO / 2:
                    tx.rollback_to_savepoint()
                else:
                    tx.release_savepoint()
            if rollback:
                conn.rollback()
                truth.rolled_back += 1
                return conn
            txid = tx.txid() if tx.counts else None
        except psycopg.Error as exc:
            # COMMIT was not sent: the server rolls the transaction back.
            truth.failed += 1
            log.warning("client %d: %s failed: %s", self.index, action.__name__, exc)
            return self._recover(conn)
        try:
            conn.commit()
        except psycopg.Error as exc:
            log.warning("client %d: COMMIT failed: %s", self.index, exc)
            if txid is None:
                truth.failed += 1
            else:
                status = txid_status(self.dsn, txid, give_up_s=RESOLVE_GIVE_UP_S, stop=self.stop)
                truth.settle(txid, tx.counts, status)
            return self._recover(conn)
        truth.committed += 1
        truth.counts.update(tx.counts)
        return conn


def run_workload(
    dsn: str,
    *,
    transactions: int | None = None,
    duration_s: float | None = None,
    clients: int = 1,
    rng_seed: int = 0,
    rollback_ratio: float = 0.05,
    stop: threading.Event | None = None,
) -> GroundTruth:
    """Run the mixed workload; return exactly what it committed.

    It ends after ``transactions`` transactions (all clients together, committed or not), after
    ``duration_s`` seconds, or when ``stop`` is set, whichever comes first. With ``clients`` > 1
    each client is a thread with its own connection. The schema must be loaded; when it holds no
    users yet, it is seeded first (scale 1) and the seed is part of the result. Deterministic for
    a given ``rng_seed`` with one client on the same starting database. When a broken-off COMMIT
    cannot be resolved, it stays in ``GroundTruth.in_doubt`` (see
    :meth:`GroundTruth.resolve_in_doubt`).
    """
    if clients < 1:
        raise ValueError(f"clients must be at least 1, not {clients}")
    if not 0.0 <= rollback_ratio <= 1.0:
        raise ValueError(f"rollback_ratio must be between 0 and 1, not {rollback_ratio}")
    if transactions is not None and transactions < 0:
        raise ValueError(f"transactions must not be negative, not {transactions}")
    if transactions is None and duration_s is None and stop is None:
        raise ValueError("give transactions, duration_s or stop, or the workload never ends")
    halt = threading.Event()  # set by the caller's stop, or when a client fails
    deadline = None if duration_s is None else time.monotonic() + duration_s
    truth = GroundTruth()
    try:
        with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            try:
                row = conn.execute("SELECT NOT EXISTS (SELECT FROM public.users)").fetchone()
            except errors.UndefinedTable:
                raise PrerequisiteError(
                    "the demo platform schema is not loaded in this database; "
                    "load it first (cdc.demo.workload.load_platform_schema)"
                ) from None
            conn.commit()
            if row is not None and row[0]:
                truth.merge(seed(conn, scale=1, rng=random.Random(rng_seed)))
    except psycopg.OperationalError as exc:
        raise ConnectError(f"cannot connect to the demo database: {exc}") from exc

    budgets: list[int | None] = [None] * clients
    if transactions is not None:
        budgets = [transactions // clients + (i < transactions % clients) for i in range(clients)]
    # One client runs in the caller's thread and watches the caller's stop event itself.
    client_stop = stop if clients == 1 and stop is not None else halt
    workers = [
        _Client(
            dsn,
            i,
            rng=random.Random(rng_seed * 1_000_003 + i),
            budget=budgets[i],
            deadline=deadline,
            rollback_ratio=rollback_ratio,
            stop=client_stop,
        )
        for i in range(clients)
    ]
    log.debug("workload starting: %d client(s), seed %d", clients, rng_seed)
    if clients == 1:
        workers[0].run()
    else:
        _run_threads(workers, stop, halt)
    for worker in workers:
        truth.merge(worker.truth)
    log.debug(
        "workload finished: %d committed (%d row changes), %d rolled back, %d failed, "
        "%d resolved after a broken commit, %d in doubt",
        truth.committed,
        truth.total(),
        truth.rolled_back,
        truth.failed,
        truth.resolved,
        len(truth.in_doubt),
    )
    return truth


def _run_threads(
    workers: Sequence[_Client], stop: threading.Event | None, halt: threading.Event
) -> None:
    failures: list[BaseException] = []

    def target(worker: _Client) -> None:
        try:
            worker.run()
        except BaseException as exc:
            failures.append(exc)
            halt.set()

    threads = [
        threading.Thread(target=target, args=(worker,), name=f"cdc-workload-{worker.index}")
        for worker in workers
    ]
    for thread in threads:
        thread.start()
    try:
        while alive := [thread for thread in threads if thread.is_alive()]:
            if stop is not None and stop.is_set():
                halt.set()
            alive[0].join(timeout=0.05)
    except BaseException:  # e.g. KeyboardInterrupt: end the clients before leaving
        halt.set()
        for thread in threads:
            thread.join()
        raise
    if failures:
        raise failures[0]
