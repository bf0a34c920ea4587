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

The modules: ``truth`` (the ground truth), ``transaction`` (one transaction's statements, from
``sql/demo/``), ``words``, ``base``, ``rows``, ``people`` and ``offerings`` (the platform's
values, inserts and actions), ``platform`` (the application and its seed rows), ``seed`` (the
schema and the seed transaction) and ``driver`` (the clients and :func:`run_workload`).
"""

from cdc.demo.workload.driver import WORKLOAD_MIX, run_workload
from cdc.demo.workload.seed import PLATFORM_TABLES, load_platform_schema, seed
from cdc.demo.workload.truth import GroundTruth, InDoubt, txid_status

__all__ = [
    "PLATFORM_TABLES",
    "WORKLOAD_MIX",
    "GroundTruth",
    "InDoubt",
    "load_platform_schema",
    "run_workload",
    "seed",
    "txid_status",
]
