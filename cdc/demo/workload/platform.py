"""The demo platform's application: every action of :mod:`people` and :mod:`offerings`, and
the seed (staff, issuers with projects and tokens, investors in every onboarding state)."""

from __future__ import annotations

from collections.abc import Sequence

from cdc.demo.workload.offerings import OfferingActions
from cdc.demo.workload.people import PeopleActions
from cdc.demo.workload.transaction import Tx, statement


class Platform(PeopleActions, OfferingActions):
    """The application: each action runs a few statements in the caller's transaction.

    An action returns False when there is nothing for it to act on (then the workload registers
    a user instead), True otherwise, even when a guarded UPDATE found its row already moved on.
    """

    def seed(self, tx: Tx, scale: int) -> None:
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
                    statement("investors_kyc_pending_seed"),
                    (investor_id,),
                )

    def _seed_active_investor(
        self, tx: Tx, investor_id: int, user_id: int, fundraising: Sequence[tuple[int, int]]
    ) -> None:
        reviewer = self._actor()
        self.new_kyc(tx, investor_id, status="approved", reviewer=reviewer)
        tx.write(
            "investors",
            "update",
            statement("investors_activate"),
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
