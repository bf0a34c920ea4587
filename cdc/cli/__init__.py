"""The command line, ``cdc``: thin click commands over the functions of :mod:`cdc`.

:mod:`cdc.cli.main` defines the group (and ``run``, ``demo``); every other module here adds its
commands to that group when it is imported. They are imported here, by name, so that importing
any part of ``cdc.cli`` gives the whole command line, and a missing module fails loudly.
"""

from cdc.cli import chain, ingest, ops, store, triggers, web
from cdc.cli.main import main

__all__ = ["chain", "ingest", "main", "ops", "store", "triggers", "web"]
