"""deploy/: the systemd unit's restart policy is the exit codes' (cdc.errors), and the
container's HEALTHCHECK answers for a running metrics server and fails without one."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from cdc.config import MetricsSettings
from cdc.errors import EXIT_CODES_NOT_RESTARTED
from cdc.metrics import Metrics
from cdc.metrics_http import MetricsServer

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def unit_setting(name: str) -> str:
    found = re.findall(rf"^{name}=(.*)$", (DEPLOY / "activity-cdc.service").read_text(), re.M)
    assert len(found) == 1, name
    return found[0]


def test_the_unit_restarts_on_failure_except_for_the_codes_a_restart_cannot_fix() -> None:
    assert unit_setting("Restart") == "on-failure"
    codes = tuple(int(code) for code in unit_setting("RestartPreventExitStatus").split())
    assert codes == EXIT_CODES_NOT_RESTARTED == (2, 4, 6, 7)


def healthcheck() -> list[str]:
    text = (DEPLOY / "Containerfile").read_text()
    match = re.search(r"^HEALTHCHECK [^\n]*\\\n\s+CMD (\[[^\n]*\])$", text, re.M)
    assert match is not None
    command = json.loads(match.group(1))
    assert isinstance(command, list) and command[0] == "python"
    return [sys.executable, *command[1:]]


def test_the_container_healthcheck_asks_healthz_on_the_metrics_port() -> None:
    assert MetricsSettings().port == 9187 and "'9187'" in " ".join(healthcheck())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CDC_METRICS__PORT": str(port)}
    assert subprocess.run(healthcheck(), env=env, capture_output=True).returncode != 0
    with MetricsServer(Metrics(), port=port):
        assert subprocess.run(healthcheck(), env=env, capture_output=True).returncode == 0
