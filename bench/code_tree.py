"""Two versions of activity-cdc side by side: this checkout, and any commit checked out beside it.

``python -m bench --compare REF`` runs the daemon of each version as its own process, with
``PYTHONPATH`` pointing at that version's tree: the modules, ``sql/`` and the example config all
come from the tree (``cdc.sqlfiles`` finds ``sql/`` next to the package in a checkout). A
commit other than this checkout is a ``git worktree add --detach`` in a temporary directory,
removed at the end. A tree with a compiled core is built in place first (``setup.py
build_ext --inplace``), so that each version runs with the implementation it ships.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The slot name in the shipped config; each version gets its own slot in a comparison.
_SLOT_LINE = re.compile(r'^slot\s*=\s*"[a-z0-9_]+"', re.MULTILINE)


@dataclass(frozen=True)
class CodeTree:
    """One version of the code: a directory holding ``cdc/`` (and the CLI), and its name."""

    label: str  # "ref" or "head"
    path: Path
    commit: str  # what it is: a commit id, "+dirty" when the working tree has changes

    def cli_module(self) -> str:
        """What ``python -m`` runs in this version: ``cdc`` since the CLI moved into the package
        (``cdc/cli/``, with ``cdc/__main__.py``), the top-level ``cli`` before."""
        if (self.path / "cdc" / "__main__.py").is_file():
            return "cdc"
        return "cli"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.path)
        env.pop("CDC_CONFIG", None)
        env.update(extra)
        return env

    def command(self, config: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", self.cli_module(), "--config", str(config), *args]

    def config_with_slot(self, slot: str, directory: Path) -> Path:
        """This version's shipped example config, with its own replication slot."""
        candidates = [self.path / "examples" / "platform.toml"]
        source = next((path for path in candidates if path.is_file()), None)
        if source is None:
            raise RuntimeError(f"{self.label}: no examples/platform.toml in {self.path}")
        text, count = _SLOT_LINE.subn(f'slot = "{slot}"', source.read_text(encoding="utf-8"))
        if count != 1:
            raise RuntimeError(f"{self.label}: cannot find the [source] slot line in {source}")
        target = directory / f"{self.label}.toml"
        target.write_text(text, encoding="utf-8")
        return target

    def build(self) -> None:
        """Compile the version's extension modules in place, when it has any."""
        if not (self.path / "setup.py").is_file():
            return
        done = subprocess.run(
            [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
            cwd=self.path,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{self.label}: build_ext failed: {done.stderr.strip()[-2000:]}")


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def is_commit(ref: str) -> bool:
    """Whether ``ref`` names a commit of this repository."""
    done = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def this_checkout() -> CodeTree:
    commit = _git("rev-parse", "--short=12", "HEAD")
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    return CodeTree("head", REPO, commit)


class CheckedOut:
    """``with CheckedOut(ref) as tree``: the commit in a temporary worktree."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self._dir: Path | None = None

    def __enter__(self) -> CodeTree:
        commit = _git("rev-parse", "--verify", "--short=12", f"{self.ref}^{{commit}}")
        self._dir = Path(tempfile.mkdtemp(prefix="cdc-bench-ref-"))
        path = self._dir / "tree"
        _git("worktree", "add", "--detach", "--quiet", str(path), commit)
        return CodeTree("ref", path, commit)

    def __exit__(self, *exc: object) -> None:
        if self._dir is None:
            return
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(self._dir / "tree")],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self._dir, ignore_errors=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)
