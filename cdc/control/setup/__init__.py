"""Control plane: prepare a database for the daemon (``cdc setup``) and remove it again
(``cdc teardown``).

Setup is two phases. :func:`plan_setup` only reads: it compares the databases with the config
and returns a :class:`SetupPlan`, a list of :class:`Step` s, each with a description and the
exact SQL it would run. :func:`apply_plan` runs those statements. ``cdc setup --dry-run`` prints
the plan and stops; running setup again plans nothing and says so.

The order matters (``run.py``): the activity store first (the sink, ``store.py``), then the
publication (``publication.py``: it must exist before the slot decodes the first change we
want), REPLICA IDENTITY FULL (``identity.py``: so updates and deletes carry the whole old row),
the application's context functions (``context.py``), and the slot last (``slot.py``).

Teardown (``teardown.py``) drops the slot and the publication, never the activity store: the
records are the audit trail, and the checkpoint row says where they stop.

Identifiers are always composed with ``psycopg.sql``; table names come from the config.
"""

from cdc.control.setup.context import CONTEXT_FUNCTIONS, context_functions_sql
from cdc.control.setup.identity import table_oids
from cdc.control.setup.plan import SetupPlan, SetupReport, Step, qualified, relation_exists
from cdc.control.setup.publication import (
    PUBLISH,
    has_generated_columns_option,
    publication_options,
)
from cdc.control.setup.run import apply_plan, check_wal_level, plan_setup, setup, setup_store
from cdc.control.setup.slot import wants_failover_slot
from cdc.control.setup.store import (
    applied_migrations,
    migration_files,
    migration_identifiers,
)
from cdc.control.setup.teardown import TeardownPlan, plan_teardown, teardown

__all__ = [
    "CONTEXT_FUNCTIONS",
    "PUBLISH",
    "SetupPlan",
    "SetupReport",
    "Step",
    "TeardownPlan",
    "applied_migrations",
    "apply_plan",
    "check_wal_level",
    "context_functions_sql",
    "has_generated_columns_option",
    "migration_files",
    "migration_identifiers",
    "plan_setup",
    "plan_teardown",
    "publication_options",
    "qualified",
    "relation_exists",
    "setup",
    "setup_store",
    "table_oids",
    "teardown",
    "wants_failover_slot",
]
