"""activity-cdc: PostgreSQL change-data-capture into an activity log, replacing audit triggers.

The pipeline (``cdc.pipeline``), one module per stage; data flows one way::

    stream -> pgoutput (decoder) -> changes -> activity (mapping) -> batching -> sink
        -> acknowledged LSN back to the server

``cdc.pipeline.daemon`` wires the stages and ``cdc.pipeline.supervisor`` keeps it running.
``cdc.control`` is the control plane (setup, checks, lag, roles, partitions), ``cdc.cutover``
moves tables from audit triggers to CDC, ``cdc.store`` reads the records (and checks their hash
chain), ``cdc.demo`` runs it all on a throwaway PostgreSQL, ``cdc.cli`` is the command line. The
base every layer uses: ``errors``, ``lsn``, ``config``, ``dsn``, ``logs``, ``metrics``,
``sqlfiles``, ``failpoints``; ``cdc.app`` is for the application side.
"""

__version__ = "0.1.0"
