"""Slot watch: warn before the slot's retained WAL reaches ``max_slot_wal_keep_size``.

A slot keeps every WAL segment from its ``restart_lsn`` on. When the daemon is stopped or
slower than the writes, that grows; past ``max_slot_wal_keep_size`` the server removes the
WAL anyway and invalidates the slot, and the changes in it are lost (docs/operations.md, "An
invalidated slot"). :class:`SlotWatcher` samples the slot every ``[daemon]
slot_watch_interval_s`` with the lag query (``sql/slot_lag.sql``, as ``cdc lag``) and
:func:`judge` grades it:

====  ========  ==================================================================
   0  ok        ``wal_status`` reserved, well within the limit
   1  warning   ``extended`` (more than ``max_wal_size`` is kept for the slot), or the
                slot retains ``slot_warn_retained_fraction`` of ``max_slot_wal_keep_size``
   2  critical  ``unreserved``: past the limit, invalidated at the next checkpoint
   3  lost      invalidated: the daemon stops with exit 6
====  ========  ==================================================================

Each grade above 0 is logged as a warning (an error from 2 on) with the numbers and what to
do, when it is first seen and then every ten samples while it lasts; the grade, the
retained bytes and ``safe_wal_size`` are the gauges ``activity_cdc_slot_retention_warning``,
``activity_cdc_slot_retained_bytes`` and ``activity_cdc_slot_safe_wal_size_bytes``. An
unlimited ``max_slot_wal_keep_size`` (-1: only the disk limits the slot) is warned about once.

The watcher has its own connection to the source and never stops the daemon: a failed
sample is logged and the next one tries again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from cdc.dsn import connect_failure
from cdc.human import human_bytes
from cdc.metrics import Metrics
from cdc.periodic import PeriodicWorker
from cdc.sqlfiles import sql_text

log = logging.getLogger("cdc.slot_watch")  # log lines keep the name they had

OK, WARNING, CRITICAL, LOST = 0, 1, 2, 3
_REPEAT_EVERY = 10  # samples between repeated log lines at the same grade

_UNITS = {"B": 1, "kB": 1024, "8kB": 8192, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_SETTINGS_SQL = (
    "SELECT name, setting::bigint, unit FROM pg_settings "
    "WHERE name IN ('max_slot_wal_keep_size', 'max_wal_size')"
)


@dataclass(frozen=True)
class SlotSample:
    slot: str
    wal_status: str | None
    safe_wal_size: int | None
    retained_bytes: int | None
    max_slot_wal_keep_size: int | None  # bytes; None: unlimited (-1)
    max_wal_size: int | None  # bytes


@dataclass(frozen=True)
class Retention:
    level: int
    message: str  # empty when ok


_WHAT_TO_DO = (
    "check that the daemon runs and keeps up (cdc lag; activity_cdc_lag_bytes); if the backlog "
    "is expected, raise max_slot_wal_keep_size (ALTER SYSTEM SET max_slot_wal_keep_size = "
    "'…'; SELECT pg_reload_conf(); no restart) and make sure the disk holds it"
)


def judge(sample: SlotSample, *, warn_fraction: float) -> Retention:
    """Grade a sample (see the module docstring); the message says the numbers and what to do."""
    slot, status = sample.slot, sample.wal_status
    retained, keep, safe = (
        sample.retained_bytes,
        sample.max_slot_wal_keep_size,
        sample.safe_wal_size,
    )
    limit = f"max_slot_wal_keep_size {human_bytes(keep)}" if keep is not None else "no limit"
    if status == "lost":
        return Retention(
            LOST,
            f"slot {slot} is invalidated (wal_status lost): the server removed WAL it still "
            "needed, so changes were lost upstream; follow docs/operations.md, "
            '"An invalidated slot"',
        )
    if status == "unreserved":
        return Retention(
            CRITICAL,
            f"slot {slot} retains {human_bytes(retained)} of WAL, past {limit} (wal_status "
            f"unreserved): the server removes that WAL at its next checkpoint and invalidates "
            f"the slot, and the changes in it are lost; act now: {_WHAT_TO_DO}",
        )
    used = retained / keep if retained is not None and keep else None
    if used is not None and used >= warn_fraction:
        return Retention(
            WARNING,
            f"slot {slot} retains {human_bytes(retained)} of WAL, {used:.0%} of {limit} "
            f"({human_bytes(safe)} left before the server invalidates the slot); {_WHAT_TO_DO}",
        )
    if status == "extended":
        left = f"; {human_bytes(safe)} left before it is invalidated" if safe is not None else ""
        return Retention(
            WARNING,
            f"slot {slot} retains {human_bytes(retained)} of WAL, more than max_wal_size "
            f"{human_bytes(sample.max_wal_size)} (wal_status extended, {limit}{left}); "
            + _WHAT_TO_DO,
        )
    return Retention(OK, "")


UNLIMITED_WARNING = (
    "max_slot_wal_keep_size is -1 (unlimited): if the daemon stops or falls behind, slot %s "
    "keeps WAL until the server's disk is full; set max_slot_wal_keep_size to the WAL of the "
    "longest outage you want to survive (WAL per hour times hours), and alert on cdc lag "
    "well below it"
)


class SlotWatcher(PeriodicWorker):
    """Samples the slot every ``interval_s`` in a background thread (:meth:`start` /
    :meth:`stop`), or once with :meth:`check_once`."""

    tick_at_start = True

    def __init__(
        self,
        dsn: str,
        slot: str,
        interval_s: float,
        *,
        metrics: Metrics | None = None,
        warn_fraction: float = 0.8,
    ) -> None:
        super().__init__(dsn, interval_s, name="slot watch")
        self.slot = slot
        self.warn_fraction = warn_fraction
        self._metrics = metrics
        self._warned_unlimited = False
        self._level = OK
        self._same_level_samples = 0
        self._failing = False
        self.last: Retention | None = None

    def sample(self) -> SlotSample | None:
        """One sample of the slot (None: it does not exist). Raises psycopg.Error."""
        conn = self.connection()
        sizes: dict[str, int | None] = {}
        for name, setting, unit in conn.execute(_SETTINGS_SQL).fetchall():
            sizes[name] = None if setting < 0 else setting * _UNITS.get(unit or "B", 1)
        row = conn.execute(sql_text("slot_lag.sql"), {"slot": self.slot}).fetchone()
        if row is None:
            return None
        return SlotSample(
            slot=self.slot,
            wal_status=row[3],
            safe_wal_size=row[4],
            retained_bytes=row[8],
            max_slot_wal_keep_size=sizes.get("max_slot_wal_keep_size"),
            max_wal_size=sizes.get("max_wal_size"),
        )

    def check_once(self) -> Retention | None:
        """Sample, grade, log and set the gauges; None when the sample failed."""
        try:
            sample = self.sample()
        except psycopg.Error as exc:
            self.close()
            if not self._failing:
                self._failing = True
                reason = connect_failure(exc, self._dsn)
                log.warning("slot watch: cannot sample slot %s (trying again every %gs): %s",
                            self.slot, self.interval_s, reason)  # fmt: skip
            return None
        if self._failing:
            self._failing = False
            log.info("slot watch: sampling slot %s again", self.slot)
        if sample is None:
            log.warning("slot watch: slot %s does not exist; run cdc setup", self.slot)
            return None
        if sample.max_slot_wal_keep_size is None and not self._warned_unlimited:
            self._warned_unlimited = True
            log.warning(UNLIMITED_WARNING, self.slot)
        retention = judge(sample, warn_fraction=self.warn_fraction)
        self._report(retention)
        if self._metrics is not None:
            unlimited = sample.max_slot_wal_keep_size is None
            self._metrics.slot_retention(
                level=retention.level,
                retained_bytes=sample.retained_bytes,
                safe_wal_size=None if unlimited else (sample.safe_wal_size or 0),
            )
        self.last = retention
        return retention

    def _report(self, retention: Retention) -> None:
        changed = retention.level != self._level
        self._same_level_samples = 0 if changed else self._same_level_samples + 1
        if retention.level == OK:
            if changed:
                log.info("slot watch: slot %s retention is back to normal", self.slot)
        elif changed or self._same_level_samples % _REPEAT_EVERY == 0:
            level = logging.WARNING if retention.level == WARNING else logging.ERROR
            log.log(level, "slot watch: %s", retention.message)
        self._level = retention.level

    def tick(self) -> None:
        self.check_once()
