"""activity-cdc: PostgreSQL change-data-capture into an activity log, replacing audit triggers.

The pipeline, one module per stage (data flows one way)::

    stream (cdc.stream) -> pgoutput decoder (cdc.pgoutput) -> changes (cdc.changes)
        -> activity mapping (cdc.activity) -> batching (cdc.batching) -> sink (cdc.sink)
        -> acknowledged LSN back to the server

``cdc.daemon`` wires the stages; ``cdc.setup``, ``cdc.lag`` hold the control plane.
"""

__version__ = "0.1.0"
