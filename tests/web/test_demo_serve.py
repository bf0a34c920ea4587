"""``cdc demo --serve``: the demo's records in the browser, the daemon and a slow workload still
running, until it is stopped; then the cluster and the token's file are gone."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cdc.config_sections import MetricsSettings
from cdc.demo.run import DemoOptions, run_demo
from tests.web.conftest import free_port

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def _default_metrics_port_taken() -> Iterator[None]:
    """127.0.0.1:9187 listened on, as by a real daemon on this host (or already taken)."""
    with socket.socket() as holder:
        with contextlib.suppress(OSError):
            holder.bind(("127.0.0.1", MetricsSettings().port))
            holder.listen()
        yield


def test_demo_serve_shows_the_records_live_until_stopped(caplog: pytest.LogCaptureFixture) -> None:
    # a daemon of this host on the default metrics port: the demo must not wait or warn
    with _default_metrics_port_taken():
        _shows_the_records_live_until_stopped(caplog)


def _shows_the_records_live_until_stopped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    lines = run_demo(DemoOptions(duration_s=2, clients=1, serve=True, port=port))
    seen: list[str] = []
    try:
        for line in lines:
            seen.append(line)
            if "sign in with the token in" in line:
                break
        text = "\n".join(seen)
        assert f"monitor:   http://127.0.0.1:{port}/monitor" in text
        match = re.search(r"token in (\S+) ", text)
        assert match is not None
        token_file = Path(match.group(1))
        token = token_file.read_text().strip()
        assert token not in text  # the path is printed, never the token
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
        ) as client:
            first = client.get("/api/activity", params={"limit": 1}).json()
            assert first["records"]
            # the slow workload and the daemon go on: records keep arriving
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                newer = client.get("/api/activity", params={"limit": 1}).json()
                if newer["live_from"] != first["live_from"]:
                    break
                time.sleep(0.5)
            assert newer["live_from"] != first["live_from"]
        # the demo's own cluster is set up as a real one should be: nothing to warn about
        warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert warned == []
    finally:
        # what Ctrl-C does: KeyboardInterrupt where the demo waits; its cleanup still says so
        rest: list[str] = []
        with pytest.raises(KeyboardInterrupt):
            rest.append(lines.throw(KeyboardInterrupt()))
            rest += list(lines)
    assert rest == ["removed the throwaway PostgreSQL"]
    assert not token_file.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
