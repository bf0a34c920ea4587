"""The workload's transactions around people: users and their sessions, API keys and roles,
investors' KYC, wallets and profiles, compliance reviews, notifications. Each returns False when
there is nothing for it to act on, True otherwise."""

from __future__ import annotations

from decimal import Decimal
from typing import LiteralString

from psycopg import sql
from psycopg.types.json import Jsonb

from cdc.demo.workload.rows import PlatformRows
from cdc.demo.workload.transaction import Tx, statement


class PeopleActions(PlatformRows):
    """Users, investors and their onboarding."""

    def register_user(self, tx: Tx) -> bool:
        """Sign-up: user, investor role, investor profile, welcome notification (4-5)."""
        user_id = self.new_user(tx, created_by=None)
        self.grant_role(tx, user_id, "investor", org_id=None, created_by=user_id)
        investor_id = self.new_investor(tx, user_id)
        self.notify(tx, user_id, "system", "Welcome to the platform")
        if self.rng.random() < 0.3:
            self.new_wallet(tx, investor_id, status="pending", created_by=user_id)
        return True

    def touch_user(self, tx: Tx) -> bool:
        """A request from a signed-in user: only last_seen_at (and updated_at) change (1)."""
        row = self._pick(tx, "users", where="status = 'active'")
        if row is None:
            return False
        tx.write(
            "users",
            "update",
            statement("users_update"),
            (row[0],),
        )
        return True

    def use_api_key(self, tx: Tx) -> bool:
        """An API call: only last_used_at (and updated_at) change (1)."""
        row = self._pick(tx, "api_keys", where="status = 'active'")
        if row is None:
            return False
        tx.write(
            "api_keys",
            "update",
            statement("api_keys_use"),
            (row[0],),
        )
        return True

    def touch_record(self, tx: Tx) -> bool:
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

    def submit_kyc(self, tx: Tx) -> bool:
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
            statement("investors_kyc_pending"),
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

    def review_kyc(self, tx: Tx) -> bool:
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
            statement("kyc_verifications_update"),
            (status, reviewer, Jsonb({"liveness": "pass", "decision": status}), reviewer, kyc_id),
        )
        if not done:
            return True
        tx.write(
            "investors",
            "update",
            statement("investors_kyc_review"),
            (status, self.rng.choice(("low", "low", "medium", "high")), reviewer, investor_id),
        )
        self.new_check(
            tx, "sanctions", status="passed" if approved else "failed", investor_id=investor_id
        )
        user_id = self._user_of_investor(tx, investor_id)
        self.notify(tx, user_id, "kyc", f"Your identity verification was {status}")
        return True

    def add_wallet(self, tx: Tx) -> bool:
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
            statement("wallets_update"),
            (actor, wallet_id),
        )
        return True

    def read_notification(self, tx: Tx) -> bool:
        """A notification is read (1)."""
        row = self._pick(tx, "notifications", where="status = 'unread'")
        if row is None:
            return False
        tx.write(
            "notifications",
            "update",
            statement("notifications_update"),
            (row[0],),
        )
        return True

    def delete_notifications(self, tx: Tx) -> bool:
        """A user clears up to 3 read notifications (1-3)."""
        row = self._pick(tx, "notifications", "id, user_id", "status IN ('read', 'archived')")
        if row is None:
            return False
        tx.write(
            "notifications",
            "delete",
            statement("notifications_delete"),
            (row[1], self.rng.randint(1, 3)),
        )
        return True

    def change_roles(self, tx: Tx) -> bool:
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
                statement("user_roles_delete"),
                (row[0],),
            )
        return True

    def rotate_api_key(self, tx: Tx) -> bool:
        """An API key is revoked and replaced; sometimes an old revoked key is deleted (2-3)."""
        row = self._pick(tx, "api_keys", "id, user_id", "status = 'active'")
        if row is None:
            return False
        actor = self._actor()
        done = tx.write(
            "api_keys",
            "update",
            statement("api_keys_revoke"),
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
                    statement("api_keys_delete"),
                    (old[0],),
                )
        return True

    def review_compliance(self, tx: Tx) -> bool:
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
            statement("compliance_checks_update"),
            (
                self.rng.choice(("passed", "passed", "failed")),
                Decimal(self.rng.randint(0, 10000)) / 100,
                actor,
                row[0],
            ),
        )
        return True

    def update_investor_profile(self, tx: Tx) -> bool:
        """An investor edits preferences; jsonb metadata and risk rating change (1)."""
        row = self._pick(tx, "investors", "id, user_id")
        if row is None:
            return False
        tx.write(
            "investors",
            "update",
            statement("investors_profile"),
            (
                Jsonb({"newsletter": self.rng.random() < 0.5, "tax_residency_confirmed": True}),
                self.rng.choice(("low", "medium", "high")),
                row[1],
                row[0],
            ),
        )
        return True
