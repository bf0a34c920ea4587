"""The daemon: the pipeline's I/O driver, started after the control plane's preflight."""

from __future__ import annotations

from cdc.config import Settings
from cdc.control.preflight import preflight
from cdc.metrics import Metrics
from cdc.pipeline.daemon import Driver
from cdc.pipeline.loop import RunStats

__all__ = ["Daemon", "RunStats"]


class Daemon(Driver):
    """``run()`` checks the source (:func:`cdc.control.preflight.preflight`), then streams
    until :meth:`request_stop` (or, with ``drain``, until everything committed before it
    started is durable and acknowledged)."""

    def __init__(
        self, settings: Settings, *, drain: bool = False, metrics: Metrics | None = None
    ) -> None:
        super().__init__(settings, preflight=preflight, drain=drain, metrics=metrics)
