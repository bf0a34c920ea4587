"""The workload's transactions around offerings: projects and their tokens, documents,
subscriptions, allocations, transfers, distributions and redemptions. Each returns False when
there is nothing for it to act on, True otherwise."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from cdc.demo.workload.base import scaled
from cdc.demo.workload.rows import PlatformRows
from cdc.demo.workload.transaction import Tx, statement

TRANSFER_FAILURE_RATIO = 0.2  # token transfers whose submission is rolled back to the savepoint


class OfferingActions(PlatformRows):
    """Projects, tokens and the money around them."""

    def subscribe(self, tx: Tx) -> bool:
        """An investor subscribes: subscription, approval request, notification, sometimes
        the signed agreement (3-4)."""
        investor = self._pick(tx, "investors", "id, user_id", "kyc_status = 'approved'")
        project = self._pick(tx, "projects", "id", "status = 'fundraising'")
        if investor is None or project is None:
            return False
        investor_id, user_id = investor
        token = tx.read_one(
            statement("project_deployed_token"),
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

    def decide_subscription(self, tx: Tx) -> bool:
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
            statement("subscriptions_decide"),
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

    def allocate_tokens(self, tx: Tx) -> bool:
        """Approved subscription -> allocated, tokens minted to the investor's wallet, sometimes
        the supply raised (2-4)."""
        row = self._pick(tx, "subscriptions", "id", "status = 'approved' AND token_id IS NOT NULL")
        if row is None:
            return False
        actor = self._actor()
        done = tx.write(
            "subscriptions",
            "update",
            statement("subscriptions_allocate"),
            (actor, row[0]),
        )
        if not done:
            return True
        investor_id, token_id, token_amount = done[0]
        wallet = tx.read_one(
            statement("investor_whitelisted_wallet"),
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
                statement("tokens_mint"),
                (token_amount, actor, token_id),
            )
        return True

    def transfer_tokens(self, tx: Tx) -> bool:
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
        amount = scaled(balance, self.rng.randint(1, 50))
        if amount <= 0:
            return False
        actor = self._actor()
        rows = tx.write(
            "token_transfers",
            "insert",
            statement("token_transfers_insert"),
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
            statement("token_transfers_submit"),
            (f"0x{self._hex(256)}", transfer_id),
        )
        if self.rng.random() < TRANSFER_FAILURE_RATIO:
            tx.rollback_to_savepoint()
            tx.write(
                "token_transfers",
                "update",
                statement("token_transfers_fail"),
                (transfer_id,),
            )
            return True
        tx.release_savepoint()
        debited = tx.write(
            "token_allocations",
            "update",
            statement("token_allocations_update"),
            (amount, actor, allocation_id, amount),
        )
        if not debited:
            tx.write(
                "token_transfers",
                "update",
                statement("token_transfers_reject"),
                (transfer_id,),
            )
            return True
        tx.write(
            "token_transfers",
            "update",
            statement("token_transfers_confirm"),
            (self.rng.randrange(18_000_000, 21_000_000), transfer_id),
        )
        self.new_allocation(tx, token_id, to_investor, to_wallet, None, amount, status="released")
        return True

    def schedule_distribution(self, tx: Tx) -> bool:
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
            statement("token_allocations_to_pay"),
            (first[1], first[0], self.rng.randint(1, 3)),
        )
        if not holders:  # moved on since it was picked (another client)
            return True
        ids = [self.new_distribution(tx, first[1], holder) for holder in holders]
        self.new_approval(tx, "distribution", ids[0], "distribution.release")
        return True

    def pay_distribution(self, tx: Tx) -> bool:
        """A scheduled payout goes processing -> paid (or failed), approval, notice (2-4)."""
        row = self._pick(tx, "distributions", "id, investor_id", "status = 'scheduled'")
        if row is None:
            return False
        distribution_id, investor_id = row
        actor = self._actor()
        done = tx.write(
            "distributions",
            "update",
            statement("distributions_process"),
            (actor, distribution_id),
        )
        if not done:
            return True
        paid = self.rng.random() < 0.9
        tx.write(
            "distributions",
            "update",
            statement("distributions_pay"),
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

    def request_redemption(self, tx: Tx) -> bool:
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
        token_amount = scaled(balance, self.rng.randint(5, 60))
        if token_amount <= 0:
            return False
        user_id = self._user_of_investor(tx, investor_id)
        rows = tx.write(
            "redemptions",
            "insert",
            statement("redemptions_insert"),
            (
                token_id,
                investor_id,
                allocation_id,
                wallet_id,
                token_amount,
                scaled(token_amount, self.rng.randint(95, 110)),
                user_id,
                user_id,
            ),
        )
        self.new_approval(tx, "redemption", rows[0][0], "redemption.approve")
        return True

    def settle_redemption(self, tx: Tx) -> bool:
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
            statement("redemptions_approve"),
            (actor, redemption_id),
        )
        if not done:
            return True
        self.decide_approvals(tx, "redemption", redemption_id, "approved")
        burned = tx.write(
            "token_allocations",
            "update",
            statement("token_allocations_update"),
            (token_amount, actor, allocation_id, token_amount),
        )
        if burned:
            tx.write(
                "redemptions",
                "update",
                statement("redemptions_settle"),
                (redemption_id,),
            )
        else:
            tx.write(
                "redemptions",
                "update",
                statement("redemptions_reject"),
                (redemption_id,),
            )
        return True

    def upload_document(self, tx: Tx) -> bool:
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
                statement("documents_publish"),
                (actor, doc_id),
            )
        return True

    def edit_document(self, tx: Tx) -> bool:
        """Title and version of a published document change; its large content does not (1)."""
        row = self._pick_document(tx, "published")
        if row is None:
            return False
        actor = self._actor()
        tx.write(
            "documents",
            "update",
            statement("documents_edit"),
            (f"Revised {self._unique()}", Jsonb({"reviewed": True}), actor, row[0]),
        )
        return True

    def delete_document(self, tx: Tx) -> bool:
        """A draft document is deleted (1)."""
        row = self._pick_document(tx, "draft")
        if row is None:
            return False
        tx.write(
            "documents",
            "delete",
            statement("documents_delete"),
            (row[0],),
        )
        return True

    def launch_project(self, tx: Tx) -> bool:
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

    def publish_project(self, tx: Tx) -> bool:
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
            statement("approvals_approve_project"),
            (actor, actor, row[0]),
        )
        if not done:
            return True
        tx.write(
            "projects",
            "update",
            statement("projects_update"),
            (actor, row[1]),
        )
        tx.write(
            "tokens",
            "update",
            statement("tokens_deploy"),
            (f"0x{self._hex(160)}", actor, row[1]),
        )
        return True

    def mint_tokens(self, tx: Tx) -> bool:
        """The supply of a deployed token is raised, with its (approved) approval (2)."""
        row = self._pick(tx, "tokens", where="status = 'deployed'")
        if row is None:
            return False
        actor = self._actor()
        tx.write(
            "tokens",
            "update",
            statement("tokens_mint"),
            (self._money(1_000, 1_000_000), actor, row[0]),
        )
        self.new_approval(tx, "token", row[0], "token.mint", status="approved")
        return True
