"""The workload driver: clients (one connection each) run the platform's transactions, drawn
from :data:`WORKLOAD_MIX`, until their budget, the deadline or the stop event, and count what
they committed. A fraction ends in ROLLBACK, and some roll back part of their work to a
SAVEPOINT; a client reconnects when its connection breaks."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import errors

from cdc.demo.workload.platform import Platform
from cdc.demo.workload.seed import seed, staff_users, unique_tag
from cdc.demo.workload.transaction import Tx
from cdc.demo.workload.truth import CONNECT_TIMEOUT_S, GroundTruth, txid_status
from cdc.errors import ConnectError, PrerequisiteError

log = logging.getLogger("cdc.demo_workload")  # log lines keep the name they had

SAVEPOINT_RATIO = 0.08  # transactions with an extra savepoint; half roll it back, half release it

RECONNECT_GIVE_UP_S = 120.0  # a client stops after this long without a connection
RESOLVE_GIVE_UP_S = 120.0  # an unknown commit outcome stays in doubt after this long


_Action = Callable[[Platform, Tx], bool]


#: The mix: (action, weight). Weights are relative; see docs/demo-platform.md.
WORKLOAD_MIX: tuple[tuple[_Action, int], ...] = (
    (Platform.register_user, 6),
    (Platform.touch_user, 8),
    (Platform.use_api_key, 4),
    (Platform.touch_record, 2),
    (Platform.submit_kyc, 5),
    (Platform.review_kyc, 5),
    (Platform.add_wallet, 3),
    (Platform.subscribe, 9),
    (Platform.decide_subscription, 8),
    (Platform.allocate_tokens, 6),
    (Platform.transfer_tokens, 7),
    (Platform.schedule_distribution, 3),
    (Platform.pay_distribution, 5),
    (Platform.request_redemption, 3),
    (Platform.settle_redemption, 3),
    (Platform.upload_document, 4),
    (Platform.edit_document, 2),
    (Platform.delete_document, 1),
    (Platform.read_notification, 4),
    (Platform.delete_notifications, 4),
    (Platform.change_roles, 2),
    (Platform.rotate_api_key, 2),
    (Platform.launch_project, 1),
    (Platform.publish_project, 1),
    (Platform.mint_tokens, 2),
    (Platform.review_compliance, 3),
    (Platform.update_investor_profile, 2),
)


_ACTIONS = tuple(action for action, _ in WORKLOAD_MIX)


_WEIGHTS = tuple(weight for _, weight in WORKLOAD_MIX)

# Small actions run inside an extra savepoint, then rolled back or released.
_SAVEPOINT_ACTIONS: tuple[_Action, ...] = (
    Platform.touch_user,
    Platform.read_notification,
    Platform.update_investor_profile,
    Platform.submit_kyc,
)


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
        self.platform: Platform | None = None

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
                    tx = Tx(conn)
                    self.platform = Platform(self.rng, unique_tag(tx), staff_users(tx))
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
        tx = Tx(conn)
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
    truth = _seed_if_empty(dsn, rng_seed)
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


def _seed_if_empty(dsn: str, rng_seed: int) -> GroundTruth:
    """The seed (scale 1) when the platform holds no users yet, else nothing."""
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
