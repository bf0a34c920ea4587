"""The mapping stage keeps its own running totals (cdc.metrics.MappingCounts): a reload of the
config hands them to the new mapper, and the metrics read them when scraped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cdc.config import settings_from_mapping
from cdc.control.heartbeat import heartbeat_content
from cdc.metrics import MappingCounts, Metrics
from cdc.pipeline.changes import Change, TransactionMessage
from cdc.pipeline.loop import Pipeline, RunStats, Source
from cdc.pipeline.spill import SpillStore
from cdc.pipeline.values import TypeRegistry


class Lookups:
    def primary_key(self, relation_id: int) -> tuple[str, ...] | None:
        return None

    def resolve_types(self, registry: TypeRegistry, type_oids: list[int]) -> None:
        pass

    def rendered(self, registry: TypeRegistry, changes: Any) -> Any:
        return changes


def settings(**batch: int) -> Any:
    """One table's settings with the given ``[batch]`` keys."""
    return settings_from_mapping(
        {"source": {"dsn": "host=db"}, "tables": [{"name": "public.users"}], "batch": batch},
        env={},
    )


def pipeline(batch: dict[str, int], counts: MappingCounts | None = None) -> Pipeline:
    """The pure core of the daemon with those ``[batch]`` settings; no server behind it."""
    return Pipeline(
        settings(**batch),
        Source(proto_version=1, rules_by_relation_id={}, drain_target=None),
        Lookups(),
        start_lsn=0,
        skip_through=0,
        spill=SpillStore(),
        stats=RunStats(),
        clock_ms=lambda: 0.0,
        track_lag=False,
        counts=counts,
    )


def heartbeat(seconds_ago: float) -> Change:
    sent_at = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return TransactionMessage(None, 0, "cdc.heartbeat", heartbeat_content(sent_at).encode(), 1)


def test_the_mapping_counts_survive_a_reload_of_the_config() -> None:
    counts = MappingCounts()
    core = pipeline({"max_rows": 100}, counts)
    assert core.mapper.map(heartbeat(2.0)) is None
    core.mapper.counts.toast_unavailable += 3
    before = core.mapper
    core.reload(settings(max_rows=50))
    assert core.mapper is not before
    assert core.mapper.counts is counts
    assert core.mapper.map(heartbeat(0.5)) is None
    assert counts.toast_unavailable == 3
    assert counts.heartbeats_received == 2
    assert 0.5 <= counts.heartbeat_latency_s < 2.0


def samples(metrics: Metrics) -> dict[str, float]:
    families = metrics.registry.collect()
    return {s.name: s.value for family in families for s in family.samples}


def test_the_metrics_read_the_stage_counts_when_scraped() -> None:
    metrics = Metrics()
    counts = MappingCounts()
    metrics.read_mapping(counts)
    counts.toast_unavailable += 2
    counts.heartbeat(0.25)
    scraped = samples(metrics)
    assert scraped["activity_cdc_toast_unavailable_total"] == 2
    assert scraped["activity_cdc_heartbeats_received_total"] == 1
    assert scraped["activity_cdc_heartbeat_latency_seconds"] == 0.25
    # the next daemon (after a restart) registers its own: the totals go on from there
    later = MappingCounts()
    metrics.read_mapping(later)
    later.toast_unavailable += 1
    scraped = samples(metrics)
    assert scraped["activity_cdc_toast_unavailable_total"] == 3
    assert scraped["activity_cdc_heartbeats_received_total"] == 1
    assert scraped["activity_cdc_heartbeat_latency_seconds"] == 0.25
    later.heartbeat(0.125)
    scraped = samples(metrics)
    assert scraped["activity_cdc_heartbeats_received_total"] == 2
    assert scraped["activity_cdc_heartbeat_latency_seconds"] == 0.125


def test_the_read_interval_follows_the_records_rate_and_a_reload() -> None:
    """[batch] read_interval_ms when quiet, busy_read_interval_ms at busy_rate (between: in
    proportion), and what a reload says."""
    core = pipeline({"read_interval_ms": 10, "busy_read_interval_ms": 40, "busy_rate": 4000})
    assert core.read_interval_ms() == 10
    core.batcher.rate = 2500.0
    assert core.read_interval_ms() == 25
    core.batcher.rate = 9000.0
    assert core.read_interval_ms() == 40
    core.reload(settings(busy_rate=0))
    assert core.read_interval_ms() == 10  # a fixed pacing
    unpaced = pipeline({"read_interval_ms": 0, "busy_read_interval_ms": 40})
    unpaced.batcher.rate = 9000.0
    assert unpaced.read_interval_ms() == 0  # each frame as it arrives, whatever the rate
