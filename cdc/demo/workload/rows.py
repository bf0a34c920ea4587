"""The rows the seed and the actions insert (and the approvals they decide), one method each."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from cdc.demo.workload.base import MICRO, PlatformBase, scaled
from cdc.demo.workload.transaction import Tx, statement
from cdc.demo.workload.words import (
    ASSET_WORDS,
    CHAINS,
    COUNTRIES,
    CURRENCIES,
    DOCUMENT_TYPES,
    KYC_PROVIDERS,
    LAST_NAMES,
    PROJECT_TYPES,
)


class PlatformRows(PlatformBase):
    """Inserts shared by the seed and the actions."""

    def new_user(self, tx: Tx, *, created_by: int | None, status: str = "active") -> int:
        first, last = self._person()
        email = f"{first}.{last}.{self._unique()}@example.com".lower()
        rows = tx.write(
            "users",
            "insert",
            statement("users_insert"),
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
        self, tx: Tx, user_id: int, role: str, *, org_id: int | None, created_by: int | None
    ) -> None:
        tx.write(
            "user_roles",
            "insert",
            statement("user_roles_insert"),
            (user_id, role, org_id, created_by),
        )

    def new_api_key(self, tx: Tx, user_id: int, *, created_by: int | None) -> None:
        scopes = sorted(self.rng.sample(("read", "write", "subscriptions", "reports"), k=2))
        tx.write(
            "api_keys",
            "insert",
            statement("api_keys_insert"),
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

    def new_investor(self, tx: Tx, user_id: int | None, *, kind: str = "individual") -> int:
        first, last = self._person()
        country = self.rng.choice(COUNTRIES)
        name = f"{first} {last}" if kind == "individual" else f"{last} Capital {self._unique()}"
        birth = None
        if kind == "individual":
            birth = f"{self.rng.randint(1950, 2003)}-{self.rng.randint(1, 12):02d}-15"
        rows = tx.write(
            "investors",
            "insert",
            statement("investors_insert"),
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

    def new_wallet(self, tx: Tx, investor_id: int, *, status: str, created_by: int | None) -> int:
        wallet_type = self.rng.choice(("custodial", "custodial", "self_custody", "multisig"))
        key_ref = f"vault://custody/{self._hex(64)}" if wallet_type == "custodial" else None
        rows = tx.write(
            "wallets",
            "insert",
            statement("wallets_insert"),
            (
                investor_id,
                self.rng.choice(CHAINS),
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

    def new_kyc(self, tx: Tx, investor_id: int, *, status: str, reviewer: int | None) -> int:
        reviewed = status in ("approved", "rejected")
        rows = tx.write(
            "kyc_verifications",
            "insert",
            statement("kyc_verifications_insert"),
            (
                investor_id,
                self.rng.choice(KYC_PROVIDERS),
                f"ref-{self._hex(48)}",
                self.rng.choice(("basic", "basic", "enhanced")),
                self.rng.choice(DOCUMENT_TYPES),
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
        tx: Tx,
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
            statement("compliance_checks_insert"),
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
        self, tx: Tx, user_id: int | None, kind: str, title: str, *, read: bool = False
    ) -> None:
        if user_id is None:
            return
        tx.write(
            "notifications",
            "insert",
            statement("notifications_insert"),
            (
                user_id,
                kind,
                title,
                f"{title}. Open the platform for details.",
                "read" if read else "unread",
                read,
            ),
        )

    def new_organization(self, tx: Tx, *, org_type: str, created_by: int | None) -> int:
        name = f"{self.rng.choice(ASSET_WORDS)} {self.rng.choice(LAST_NAMES)}"
        rows = tx.write(
            "organizations",
            "insert",
            statement("organizations_insert"),
            (
                name,
                f"{name} Holdings Ltd",
                org_type,
                self.rng.choice(COUNTRIES),
                f"REG-{self._unique()}",
                created_by,
                created_by,
            ),
        )
        return int(rows[0][0])

    def new_project(
        self, tx: Tx, org_id: int, *, status: str, created_by: int | None
    ) -> tuple[int, int]:
        """A project with its token and prospectus; returns (project id, token id)."""
        unique = self._unique()
        name = f"{self.rng.choice(ASSET_WORDS)} {self.rng.choice(ASSET_WORDS)} {unique}"
        target = self._money(500_000, 50_000_000)
        rows = tx.write(
            "projects",
            "insert",
            statement("projects_insert"),
            (
                org_id,
                name,
                name.lower().replace(" ", "-"),
                self.rng.choice(PROJECT_TYPES),
                status,
                target,
                Decimal(self.rng.choice((1000, 5000, 10000))),
                self.rng.choice(CURRENCIES),
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
            statement("tokens_insert"),
            (
                project_id,
                unique.upper(),
                f"{name} Token",
                self.rng.choice(("ERC-20", "ERC-1400", "ERC-3643", "ERC-3643")),
                self.rng.choice(CHAINS),
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
        tx: Tx,
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
            statement("documents_insert"),
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
        tx: Tx,
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
            statement("subscriptions_insert"),
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
        self, tx: Tx, entity_type: str, entity_id: int, action: str, *, status: str = "pending"
    ) -> None:
        requested_by = self._actor()
        decided_by = self._actor() if status != "pending" else None
        tx.write(
            "approvals",
            "insert",
            statement("approvals_insert"),
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

    def decide_approvals(self, tx: Tx, entity_type: str, entity_id: int, status: str) -> None:
        actor = self._actor()
        tx.write(
            "approvals",
            "update",
            statement("approvals_decide"),
            (status, actor, actor, entity_type, entity_id),
        )

    def new_allocation(
        self,
        tx: Tx,
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
            statement("token_allocations_insert"),
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

    def new_distribution(self, tx: Tx, token_id: int, allocation: Sequence[Any]) -> int:
        allocation_id, investor_id, wallet_id, amount = allocation
        actor = self._actor()
        rows = tx.write(
            "distributions",
            "insert",
            statement("distributions_insert"),
            (
                token_id,
                investor_id,
                wallet_id,
                allocation_id,
                self.rng.choice(("dividend", "interest", "coupon", "return_of_capital")),
                max(scaled(amount, self.rng.randint(1, 4)), MICRO),
                actor,
                actor,
            ),
        )
        return int(rows[0][0])
