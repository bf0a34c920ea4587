"""The daemon as a service: the pipeline's driver with the control plane's preflight
(``daemon``), kept running through lost connections and failovers (``supervisor``), and the
one function ``cdc run``, ``cdc demo`` and the benchmarks start it with (``run``: metrics,
heartbeat, slot watch, signals)."""
