"""The one way to start the daemon: ``cdc run``, ``cdc demo`` and the benchmarks (which run
``cdc run``) all go through :class:`Service`.

A service is the daemon (with ``drain``: one run that exits when it has caught up; else the
:class:`~cdc.service.supervisor.Supervisor`, which reconnects and waits as a standby), the
metrics endpoint, and the helpers of a long run: the slot watch, the JetStream watch and the
heartbeat. :meth:`Service.run` starts them, runs the daemon, and stops them again in reverse
order whatever happens. Signals are the caller's: :meth:`request_stop` and :meth:`reload` are
signal-safe.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from cdc.config import Settings
from cdc.control.heartbeat import HeartbeatEmitter
from cdc.control.jetstream_watch import JetStreamWatcher
from cdc.control.slot_watch import SlotWatcher
from cdc.errors import CdcError
from cdc.metrics import Metrics
from cdc.metrics_http import start_metrics
from cdc.periodic import Periodic
from cdc.pipeline.loop import RunStats
from cdc.service.daemon import Daemon
from cdc.service.supervisor import Supervisor

log = logging.getLogger("cdc.cli")  # log lines keep the name they had


# A gen-0 collection after this many new container objects instead of CPython's 700.
COLLECT_EVERY = 50_000


def quiet_collector() -> None:
    """Tune the cyclic garbage collector for a process that streams (``cdc run``).

    Every change makes about ten short-lived container objects (a message, its row tuples, a
    change, a record), nearly all freed by reference counting the moment they are done with;
    the pipeline makes almost no cycles. CPython's default collects the young generation every
    700 allocations (every ~70 changes) and the whole heap every ~7,000 changes, walking the
    batch in hand and everything imported each time. Here: the objects of start-up (modules,
    the config, the catalog) are frozen out of every collection, and the young generation is
    collected every :data:`COLLECT_EVERY` allocations (a few MB of cyclic garbage at most).
    For the process's owner only: it changes the whole interpreter."""
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(COLLECT_EVERY, middle, old)


# How long a thread may hold the GIL while another waits for it (CPython's default: 5 ms).
SWITCH_INTERVAL_S = 0.0005


def prompt_threads() -> None:
    """Let the sink's writer thread take the GIL back within :data:`SWITCH_INTERVAL_S` when
    the server answers it, for ``cdc run``.

    The writer waits on the server with the GIL released; while it waits, the read loop runs
    compiled code (decoding, mapping) that never gives the GIL up by itself. When the answer
    comes (a COPY's end, the flush's end statement, the commit), the writer waited up to the
    switch interval for the GIL, three times a flush, and the sink's backend sat idle
    meanwhile: in a drain it was busy 0.65-0.67 of the time, 0.70-0.72 with 0.5 ms
    (docs/benchmarks.md). For the process's owner only: it changes the whole interpreter."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


@dataclass(frozen=True)
class Outcome:
    stats: RunStats
    reconnects: int


class Service:
    """The daemon and everything that runs beside it, for one process."""

    def __init__(self, settings: Settings, *, drain: bool = False) -> None:
        self.settings = settings
        self.drain = drain
        self.metrics, self._server = start_metrics(settings.metrics)
        self._runner: Daemon | Supervisor = (
            Daemon(settings, drain=True, metrics=self.metrics)
            if drain
            else Supervisor(settings, metrics=self.metrics)
        )

    def run(self) -> Outcome:
        """Start the helpers, run the daemon until it stops (or has drained), stop them all."""
        helpers: list[Periodic] = []
        try:
            if not self.drain:
                helpers = _start_helpers(self.settings, self.metrics)
            stats = self._runner.run()
        finally:
            for helper in reversed(helpers):
                helper.stop()
            self._runner.close()
            if self._server is not None:
                self._server.stop()
        return Outcome(stats, getattr(self._runner, "reconnects", 0))

    def request_stop(self) -> None:
        """Finish the batch in hand, acknowledge it, return from :meth:`run`. Signal-safe."""
        self._runner.request_stop()

    def reload(self, load: Callable[[], Settings]) -> None:
        """New mapping, redaction and batch settings (SIGHUP); a config that does not load
        is refused and the running one kept."""
        try:
            ignored = self._runner.reload(load())
        except CdcError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            return
        if ignored:
            log.warning(
                "reload: changes to [%s] need a restart; kept the running ones", ", ".join(ignored)
            )


def _start_helpers(settings: Settings, metrics: Metrics) -> list[Periodic]:
    options = settings.daemon
    helpers: list[Periodic] = []
    if options.slot_watch_interval_s > 0:
        helpers.append(
            SlotWatcher(
                settings.source.dsn,
                settings.source.slot,
                options.slot_watch_interval_s,
                metrics=metrics,
                warn_fraction=options.slot_warn_retained_fraction,
            ).start()
        )
    if settings.sink.kind == "jetstream" and options.slot_watch_interval_s > 0:
        helpers.append(
            JetStreamWatcher(settings.sink, options.slot_watch_interval_s, metrics).start()
        )
    if options.heartbeat_interval_s > 0:
        helpers.append(
            HeartbeatEmitter(
                settings.source.dsn,
                options.heartbeat_interval_s,
                metrics=metrics,
                should_emit=lambda: metrics.streaming,  # a standby stays quiet
            ).start()
        )
    return helpers
