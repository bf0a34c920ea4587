"""The pipeline, one module per stage; data flows one way::

    stream -> pgoutput (messages) -> changes (transactions) -> activity (records)
        -> batching -> sink (durable) -> the acknowledged LSN back to the server

``daemon`` is the loop that wires the stages; ``supervisor`` keeps it running.
"""
