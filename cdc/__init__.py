"""activity-cdc: PostgreSQL change-data-capture into an activity log, replacing audit triggers.

The pipeline (``cdc.pipeline``), one module per stage; data flows one way::

    stream -> pgoutput (decoder) -> changes -> activity (mapping) -> batching -> sink
        -> acknowledged LSN back to the server

``cdc.pipeline.loop`` is the pure core that wires the stages and ``cdc.pipeline.daemon`` its
I/O driver. ``cdc.store`` (below the pipeline: the sink uses its hash chain) reads the records,
``cdc.cutover`` moves tables from audit triggers to CDC, ``cdc.control`` is the control plane
(setup, preflight, checks, lag, roles, partitions, heartbeat, slot watch), ``cdc.service``
starts the daemon the one way (``cdc.service.run``) and keeps it running, ``cdc.demo`` runs it
all on a throwaway PostgreSQL, ``cdc.cli`` is the command line. A module imports only from its
own floor and the ones below (tests/unit/test_architecture.py). The base every floor uses:
``errors``, ``lsn``, ``config`` (+ ``config_sections``), ``dsn``, ``connect``, ``retry``,
``logs``, ``metrics`` (+ ``metrics_http``), ``sqlfiles``, ``failpoints``, ``periodic`` (the
periodic thread of the heartbeat, slot and JetStream watches); ``cdc.app`` is for the application
side.
"""

__version__ = "0.1.0"
