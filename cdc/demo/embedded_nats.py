"""A throwaway NATS JetStream cluster on loopback ports, for tests, the chaos run and benchmarks.

``nats-server`` (Debian's ``nats-server`` package; ``scripts/bootstrap.sh`` installs it) runs
``nodes`` processes with JetStream on free 127.0.0.1 ports, clustered through routes, each with
its own store directory under a temporary directory that :meth:`NatsCluster.stop` removes. A node
can be stopped and started again (same ports, same store) to test a node failure. Never the
NATS that may run on 4222: the ports are picked free.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from cdc.errors import PrerequisiteError


def nats_server_binary() -> str:
    """``$CDC_NATS_SERVER`` or ``nats-server`` on the PATH (or Debian's /usr/sbin)."""
    explicit = os.environ.get("CDC_NATS_SERVER")
    if explicit:
        return explicit
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")
    if not found:
        raise PrerequisiteError(
            "nats-server not found; run scripts/bootstrap.sh (installs Debian's nats-server "
            "package) or set CDC_NATS_SERVER to the binary"
        )
    return found


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class NatsCluster:
    """``nodes`` JetStream servers in one cluster (one node: no cluster block)."""

    def __init__(self, nodes: int = 3, *, name: str = "cdc-test") -> None:
        self.nodes = nodes
        self.name = name
        self.binary = nats_server_binary()
        self.root = Path(tempfile.mkdtemp(prefix="cdc-nats-"))
        ports = _free_ports(nodes * 2)
        self.client_ports = ports[:nodes]
        self.route_ports = ports[nodes:]
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * nodes

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{port}" for port in self.client_ports]

    def _config(self, index: int) -> Path:
        store = self.root / f"n{index}"
        store.mkdir(exist_ok=True)
        lines = [
            f"server_name: n{index}",
            f"listen: 127.0.0.1:{self.client_ports[index]}",
            f'jetstream {{ store_dir: "{store}", max_memory_store: 64MB, max_file_store: 4GB }}',
        ]
        if self.nodes > 1:
            routes = ", ".join(
                f"nats-route://127.0.0.1:{port}"
                for i, port in enumerate(self.route_ports)
                if i != index
            )
            lines.append(
                f"cluster {{ name: {self.name}, listen: 127.0.0.1:{self.route_ports[index]}, "
                f"routes: [{routes}] }}"
            )
        path = self.root / f"n{index}.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> NatsCluster:
        for index in range(self.nodes):
            self.start_node(index)
        self.wait_ready()
        return self

    def start_node(self, index: int) -> None:
        if self._procs[index] is not None and self._procs[index].poll() is None:  # type: ignore[union-attr]
            return
        log = open(self.root / f"n{index}.log", "ab")  # noqa: SIM115 (the process keeps it)
        self._procs[index] = subprocess.Popen(
            [self.binary, "-c", str(self._config(index))],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def stop_node(self, index: int, *, kill: bool = False) -> None:
        proc = self._procs[index]
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill() if kill else proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._procs[index] = None

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until the JetStream meta group has a leader (a request to $JS.API.INFO answers)."""
        import asyncio

        import nats

        async def probe() -> bool:
            async def quiet(_exc: Exception) -> None:
                pass  # not up yet: the loop asks again

            try:
                nc = await nats.connect(
                    self.urls,
                    connect_timeout=1,
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                    error_cb=quiet,
                )
            except Exception:
                return False
            try:
                await nc.jetstream(timeout=2).account_info()
                return True
            except Exception:
                return False
            finally:
                with contextlib.suppress(Exception):
                    await nc.close()

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if asyncio.run(probe()):
                return
            time.sleep(0.3)
        raise PrerequisiteError(f"the NATS test cluster in {self.root} did not become ready")

    def stop(self) -> None:
        for index in range(self.nodes):
            self.stop_node(index)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
