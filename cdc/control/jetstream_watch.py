"""JetStream watch: the stream's and its consumers' lag as metrics, in the daemon.

With ``[sink] kind = "jetstream"``, ``cdc run`` samples the stream every ``[daemon]
slot_watch_interval_s`` (the same sample as ``cdc lag``:
:func:`cdc.pipeline.jetstream_lag.jetstream_lag`)
and sets the ``activity_cdc_jetstream_*`` gauges. A cluster that does not answer sets
``activity_cdc_jetstream_up`` to 0 and is logged once until it answers again; the watcher never
stops the daemon.
"""

from __future__ import annotations

import logging

from cdc.config import SinkSettings
from cdc.metrics import Metrics
from cdc.periodic import Periodic
from cdc.pipeline.jetstream_lag import JetStreamLag, jetstream_lag

log = logging.getLogger("cdc.jetstream_watch")  # log lines keep the name they had


class JetStreamWatcher(Periodic):
    tick_at_start = True

    def __init__(self, settings: SinkSettings, interval_s: float, metrics: Metrics) -> None:
        super().__init__(interval_s, name="js watch")
        self.settings = settings
        self._metrics = metrics
        self._failing = False
        self.last: JetStreamLag | None = None

    def stop(self, timeout_s: float = 30.0) -> None:
        # a sample may wait longer for the cluster than a database round (jetstream_lag allows
        # up to 60 s); the thread is a daemon thread either way
        super().stop(timeout_s)

    def check_once(self) -> JetStreamLag:
        lag = jetstream_lag(self.settings)
        self.last = lag
        if lag.error is not None:
            if not self._failing:
                log.warning("jetstream watch: %s", lag.error)
            self._failing = True
            self._metrics.jetstream(up=False, last_seq=None, consumers=())
            return lag
        if self._failing:
            log.info("jetstream watch: stream %s answers again", self.settings.stream)
        self._failing = False
        self._metrics.jetstream(
            up=True,
            last_seq=lag.last_seq,
            consumers=[
                (c.name, c.pending_messages, c.ack_pending, c.ack_floor) for c in lag.consumers
            ],
        )
        return lag

    def tick(self) -> None:
        self.check_once()
