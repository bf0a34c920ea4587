"""cdc.metrics: exact values after the daemon's calls, scraped over HTTP like Prometheus does,
and /healthz and /readyz."""

from __future__ import annotations

import collections
import platform
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdc import __version__, metrics_http
from cdc.config import MetricsSettings, settings_from_mapping
from cdc.errors import ConfigError
from cdc.metrics import Metrics, error_kinds, tally
from cdc.metrics_http import MetricsServer, start_metrics


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(ready_max_lag_seconds=30)


@pytest.fixture
def server(metrics: Metrics) -> Iterator[MetricsServer]:
    with MetricsServer(metrics, bind="127.0.0.1", port=0) as running:
        yield running


def get(server: MetricsServer, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(server: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = get(server, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_a_fresh_daemon_exposes_every_metric_at_zero(server: MetricsServer) -> None:
    samples = scrape(server)
    for name in (
        "activity_cdc_batch_rows_count",
        "activity_cdc_batch_write_seconds_count",
        "activity_cdc_received_lsn",
        "activity_cdc_flushed_lsn",
        "activity_cdc_lag_bytes",
        "activity_cdc_lag_seconds",
        "activity_cdc_streaming",
        "activity_cdc_reconnects_total",
        "activity_cdc_toast_unavailable_total",
    ):
        assert samples[(name, ())] == 0, name
    # the standard process collector, not a gauge of our own
    assert samples[("process_resident_memory_bytes", ())] > 1_000_000
    assert samples[("process_cpu_seconds_total", ())] > 0
    assert ("activity_cdc_resident_memory_bytes", ()) not in samples
    build = [labels for name, labels in samples if name == "activity_cdc_build_info"]
    assert build == [(("python", platform.python_version()), ("version", __version__))]
    # every error kind at 0 from the start, and no *_created series beside any counter
    errors = {dict(labels)["kind"]: value for (name, labels), value in samples.items()
              if name == "activity_cdc_errors_total"}  # fmt: skip
    assert errors == dict.fromkeys(error_kinds(), 0.0)
    assert {"SinkError", "ConnectError", "SlotInUse", "DecodeError", "dead_letter"} <= set(errors)
    assert not [name for name, _ in samples if name.endswith("_created")]


def test_written_batches_count_records_by_table_and_operation(
    metrics: Metrics, server: MetricsServer
) -> None:
    metrics.batch_written(
        rows=3,
        seconds=0.02,
        by_table_op={("public.orders", "insert"): 2, ("public.orders", "update"): 1},
    )
    metrics.batch_written(rows=5, seconds=0.3, by_table_op={("public.orders", "insert"): 5})
    samples = scrape(server)
    orders = (("operation", "insert"), ("table", "public.orders"))
    assert samples[("activity_cdc_records_total", orders)] == 7
    assert (
        samples[
            ("activity_cdc_records_total", (("operation", "update"), ("table", "public.orders")))
        ]
        == 1
    )
    assert samples[("activity_cdc_batch_rows_count", ())] == 2
    assert samples[("activity_cdc_batch_rows_sum", ())] == 8
    assert samples[("activity_cdc_batch_rows_bucket", (("le", "1.0"),))] == 0
    assert samples[("activity_cdc_batch_rows_bucket", (("le", "10.0"),))] == 2
    assert samples[("activity_cdc_batch_write_seconds_count", ())] == 2
    assert samples[("activity_cdc_batch_write_seconds_sum", ())] == pytest.approx(0.32)
    assert samples[("activity_cdc_batch_write_seconds_bucket", (("le", "0.025"),))] == 1


def test_positions_reconnects_errors_and_toast_are_exact(
    metrics: Metrics, server: MetricsServer
) -> None:
    metrics.positions(
        received_lsn=0x16_B374D848, flushed_lsn=0x16_B374D000, lag_bytes=2120, lag_seconds=1.5
    )
    metrics.reconnect()
    metrics.reconnect()
    metrics.error("SinkError")
    metrics.error("SinkError")
    metrics.error("ConnectError")
    metrics.toast_unavailable(3)
    metrics.toast_unavailable(0)
    samples = scrape(server)
    assert samples[("activity_cdc_received_lsn", ())] == 0x16_B374D848
    assert samples[("activity_cdc_flushed_lsn", ())] == 0x16_B374D000
    assert samples[("activity_cdc_lag_bytes", ())] == 2120
    assert samples[("activity_cdc_lag_seconds", ())] == 1.5
    assert samples[("activity_cdc_reconnects_total", ())] == 2
    assert samples[("activity_cdc_errors_total", (("kind", "SinkError"),))] == 2
    assert samples[("activity_cdc_errors_total", (("kind", "ConnectError"),))] == 1
    assert samples[("activity_cdc_toast_unavailable_total", ())] == 3


def test_positions_without_lags_keep_the_last_known_lags(
    metrics: Metrics, server: MetricsServer
) -> None:
    metrics.positions(received_lsn=10, flushed_lsn=5, lag_bytes=5, lag_seconds=2.0)
    metrics.positions(received_lsn=20, flushed_lsn=20)
    samples = scrape(server)
    assert samples[("activity_cdc_received_lsn", ())] == 20
    assert samples[("activity_cdc_lag_bytes", ())] == 5
    assert samples[("activity_cdc_lag_seconds", ())] == 2.0


def test_an_error_kind_that_is_not_a_class_name_never_becomes_a_label(
    metrics: Metrics, server: MetricsServer
) -> None:
    metrics.error("cannot connect to host=db password=hunter2")
    metrics.error("postgresql://cdc:hunter2@db/x")
    _, body = get(server, "/metrics")
    assert "hunter2" not in body
    assert scrape(server)[("activity_cdc_errors_total", (("kind", "other"),))] == 2


def test_healthz_answers_while_the_process_runs(server: MetricsServer) -> None:
    assert get(server, "/healthz") == (200, "ok\n")


@pytest.mark.parametrize(("path", "status"), [("/healthz", 200), ("/readyz", 503), ("/x", 404)])
def test_head_answers_like_get_without_a_body(
    server: MetricsServer, path: str, status: int
) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            answer = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        answer = exc.code, exc.read()
    assert answer == (status, b"")


def test_readyz_is_503_until_the_daemon_streams(metrics: Metrics, server: MetricsServer) -> None:
    assert get(server, "/readyz") == (503, "not ready: not streaming yet\n")
    metrics.set_streaming(True)
    assert get(server, "/readyz") == (200, "ready: streaming (lag not measured yet)\n")
    metrics.positions(received_lsn=1, flushed_lsn=1, lag_seconds=29.5)
    assert get(server, "/readyz") == (200, "ready: streaming, lag 29.5s\n")
    assert scrape(server)[("activity_cdc_streaming", ())] == 1


def test_readyz_is_503_with_the_reason_when_lag_is_over_the_threshold(
    metrics: Metrics, server: MetricsServer
) -> None:
    metrics.set_streaming(True)
    metrics.positions(received_lsn=1, flushed_lsn=1, lag_seconds=30.5)
    assert get(server, "/readyz") == (503, "not ready: lag 30.5s > 30s\n")
    metrics.positions(received_lsn=2, flushed_lsn=2, lag_seconds=0.0)
    assert get(server, "/readyz")[0] == 200
    metrics.set_streaming(False, "reconnecting")
    assert get(server, "/readyz") == (503, "not ready: reconnecting\n")
    assert scrape(server)[("activity_cdc_streaming", ())] == 0


def test_unknown_paths_are_404(server: MetricsServer) -> None:
    assert get(server, "/nope")[0] == 404


def test_each_instance_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.reconnect()
    assert b"activity_cdc_reconnects_total 1.0" in first.exposition()
    assert b"activity_cdc_reconnects_total 0.0" in second.exposition()


@dataclass
class Rec:
    schema_name: str | None
    table_name: str | None
    operation: str


def test_tally_counts_records_per_qualified_table_and_operation() -> None:
    records = [
        Rec("public", "orders", "insert"),
        Rec("public", "orders", "insert"),
        Rec("public", "orders", "delete"),
        Rec("billing", "orders", "insert"),
        Rec(None, None, "message"),
    ]
    assert tally(records) == collections.Counter(
        {
            ("public.orders", "insert"): 2,
            ("public.orders", "delete"): 1,
            ("billing.orders", "insert"): 1,
            ("", "message"): 1,
        }
    )


def test_metrics_are_on_by_default_on_loopback_and_off_when_the_port_is_zero() -> None:
    assert (MetricsSettings().bind, MetricsSettings().port) == ("127.0.0.1", 9187)
    metrics, server = start_metrics(MetricsSettings(port=0))
    assert server is None
    assert metrics.ready_max_lag_seconds == 60


def test_a_busy_port_is_retried_and_served_once_free_while_a_bad_address_is_a_config_error() -> (
    None
):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    metrics = Metrics()
    server = MetricsServer(metrics, port=port, retry_s=0.05).start()
    try:
        assert not server.serving  # a standby on the same host: no exit, no collision
        holder.close()  # the other daemon is gone: this one takes the port over
        deadline = time.monotonic() + 30
        while not server.serving and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.port == port
        assert get(server, "/healthz")[0] == 200
    finally:
        holder.close()
        server.stop()
    with pytest.raises(ConfigError, match=r"192\.0\.2\.1:.*choose another"):
        MetricsServer(metrics, bind="192.0.2.1", port=port)  # not an address of this host


def test_a_server_stopped_while_waiting_for_a_busy_port_stops_at_once() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        server = MetricsServer(Metrics(), port=holder.getsockname()[1], retry_s=3600).start()
        server.stop()
        assert not server.serving


def test_the_metrics_section_is_validated_like_the_rest_of_the_config() -> None:
    tables = [{"name": "public.t"}]
    settings = settings_from_mapping(
        {"source": {"dsn": "x"}, "metrics": {"port": 9188}, "tables": tables}, env={}
    )
    assert (settings.metrics.port, settings.metrics.bind) == (9188, "127.0.0.1")
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        settings_from_mapping(
            {"source": {"dsn": "x"}, "metrics": {"port": 70000}, "tables": tables}, env={}
        )
    with pytest.raises(ConfigError, match=r"metrics\.ready_max_lag_seconds"):
        settings_from_mapping(
            {"source": {"dsn": "x"}, "metrics": {"ready_max_lag_seconds": 0}, "tables": tables},
            env={},
        )


def test_jetstream_samples_become_gauges_per_consumer(
    metrics: Metrics, server: MetricsServer
) -> None:
    metrics.jetstream(
        up=True, last_seq=1200, consumers=[("activity_ingest", 30, 5, 1165), ("siem", 0, 0, 1200)]
    )
    samples = scrape(server)
    assert samples[("activity_cdc_jetstream_up", ())] == 1
    assert samples[("activity_cdc_jetstream_stream_last_seq", ())] == 1200
    ingest = (("consumer", "activity_ingest"),)
    assert samples[("activity_cdc_jetstream_pending_messages", ingest)] == 30
    assert samples[("activity_cdc_jetstream_ack_pending_messages", ingest)] == 5
    assert samples[("activity_cdc_jetstream_ack_floor", ingest)] == 1165
    assert samples[("activity_cdc_jetstream_ack_floor", (("consumer", "siem"),))] == 1200
    metrics.jetstream(up=False, last_seq=None, consumers=())
    samples = scrape(server)
    assert samples[("activity_cdc_jetstream_up", ())] == 0
    assert samples[("activity_cdc_jetstream_stream_last_seq", ())] == 1200  # the last known


def _closed_by_server(conn: socket.socket) -> bool:
    conn.settimeout(5)
    try:
        return conn.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_connections_that_send_nothing_are_bounded_and_closed_while_scrapes_go_on(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a port scan or a slow client must not fill the daemon with threads
    monkeypatch.setattr(metrics_http, "REQUEST_TIMEOUT_S", 1.0)
    monkeypatch.setattr(metrics_http, "MAX_CONNECTIONS", 4)
    with MetricsServer(metrics, bind="127.0.0.1", port=0) as server:
        before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
        time.sleep(0.5)
        assert threading.active_count() - before <= 4  # one thread per connection served
        # every one is closed: those over the bound at once, the others after the timeout
        assert all(_closed_by_server(conn) for conn in idle)
        for conn in idle:
            conn.close()
        deadline = time.monotonic() + 5
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() == before
        assert get(server, "/healthz") == (200, "ok\n")
        assert scrape(server)[("activity_cdc_streaming", ())] == 0
