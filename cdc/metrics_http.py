"""``/metrics``, ``/healthz`` and ``/readyz`` over HTTP for the daemon's
:class:`~cdc.metrics.Metrics` (what they answer: cdc/metrics.py's docstring)."""

from __future__ import annotations

import errno
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cdc.config import MetricsSettings
from cdc.errors import ConfigError
from cdc.metrics import Metrics

log = logging.getLogger("cdc.metrics")  # log lines keep the name they had

# Each connection is a thread of the daemon's process. A connection that sends nothing (a port
# scan, a half-open probe, a slow client) would hold its thread for good, and enough of them
# would fill the daemon with threads: a connection gets REQUEST_TIMEOUT_S to send its request,
# and at most MAX_CONNECTIONS are served at once (more are closed unanswered; a scraper
# tries again at its next interval).
REQUEST_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 32


class _BoundedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class MetricsServer:
    """``/metrics``, ``/healthz``, ``/readyz`` on ``bind:port`` in a background thread.
    ``port=0`` picks a free port (see :attr:`port`).

    A port another process holds is not a configuration error: it is most often the daemon
    being replaced (still shutting down) or a standby on the same host with the same config.
    The server then tries again every ``retry_s`` in its thread and serves as soon as the port
    is free, so the endpoint follows the daemon that outlives the other. An address that
    cannot work (not on this host, a privileged port) is a ConfigError (exit 4)."""

    def __init__(
        self, metrics: Metrics, *, bind: str = "127.0.0.1", port: int = 0, retry_s: float = 5.0
    ) -> None:
        self.metrics = metrics
        self._bind, self._port, self._retry_s = bind, port, retry_s
        self._handler = _handler_for(metrics)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = self._listen()
        self._thread = threading.Thread(
            target=self._serve, name="activity-cdc-metrics", daemon=True
        )

    def _listen(self) -> ThreadingHTTPServer | None:
        """The bound server; None: the port is in use."""
        try:
            server = _BoundedServer((self._bind, self._port), self._handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return None
            raise ConfigError(
                f"cannot serve metrics on {self._bind}:{self._port}: {exc.strerror}; choose "
                "another [metrics] port or bind"
            ) from None
        return server

    @property
    def port(self) -> int:
        server = self._server
        return int(server.server_address[1]) if server is not None else self._port

    @property
    def serving(self) -> bool:
        """False while the port is held by another process (see the class docstring)."""
        return self._server is not None

    def start(self) -> MetricsServer:
        if self._server is None:
            log.warning(
                "metrics port %s:%d is in use (another daemon on this host?); trying again "
                "every %gs, serving as soon as it is free",
                self._bind,
                self._port,
                self._retry_s,
            )
        self._thread.start()
        return self

    def _serve(self) -> None:
        while self._server is None:
            if self._stopping.wait(self._retry_s):
                return
            server = self._listen()
            with self._lock:
                if self._stopping.is_set():
                    if server is not None:
                        server.server_close()
                    return
                self._server = server
        log.info("metrics on http://%s:%d/metrics", self._server.server_address[0], self.port)
        self._server.serve_forever()

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            server = self._server
        if server is not None and self._thread.is_alive():
            server.shutdown()
        if self._thread.is_alive():
            self._thread.join()
        if server is not None:
            server.server_close()

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "activity-cdc"
        timeout = REQUEST_TIMEOUT_S  # the connection's socket timeout (StreamRequestHandler)

        def do_HEAD(self) -> None:
            # what GET would answer, without the body (probes that only look at the status)
            self._head_only = True
            self.do_GET()

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ready, reason = metrics.readiness()
                status = 200 if ready else 503
                text = f"{'ready' if ready else 'not ready'}: {reason}\n"
                self._send(status, text.encode())
            else:
                self._send(404, b"not found: try /metrics, /healthz, /readyz\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not getattr(self, "_head_only", False):
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics http: " + format, *args)

    return Handler


def start_metrics(settings: MetricsSettings) -> tuple[Metrics, MetricsServer | None]:
    """The daemon's metrics, and their HTTP server when ``[metrics] port`` is set (else None).
    Stop the server with :meth:`MetricsServer.stop`."""
    metrics = Metrics(ready_max_lag_seconds=settings.ready_max_lag_seconds)
    if settings.port == 0:
        return metrics, None
    return metrics, MetricsServer(metrics, bind=settings.bind, port=settings.port).start()
