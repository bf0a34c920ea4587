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
import threading

from cdc.config import SinkSettings
from cdc.metrics import Metrics
from cdc.pipeline.jetstream_lag import JetStreamLag, jetstream_lag

log = logging.getLogger("cdc.jetstream_watch")  # log lines keep the name they had


class JetStreamWatcher:
    def __init__(self, settings: SinkSettings, interval_s: float, metrics: Metrics) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self._metrics = metrics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="activity-cdc-js-watch", daemon=True)
        self._failing = False
        self.last: JetStreamLag | None = None

    def start(self) -> JetStreamWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

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

    def _run(self) -> None:
        self.check_once()
        while not self._stop.wait(self.interval_s):
            self.check_once()
