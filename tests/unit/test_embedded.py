"""Where the throwaway cluster's server binaries come from."""

from __future__ import annotations

import pytest

import cdc.demo.embedded
from cdc.demo.embedded import find_bindir


def test_without_installed_binaries_the_pip_installable_server_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CDC_PG_BINDIR", raising=False)
    monkeypatch.setattr(cdc.demo.embedded.shutil, "which", lambda _name: None)
    monkeypatch.setattr(cdc.demo.embedded.glob, "glob", lambda _pattern: [])
    bindir = find_bindir()
    assert bindir.parts[-3:] == ("pgserver", "pginstall", "bin")
    assert (bindir / "initdb").exists()


def test_an_explicit_bindir_comes_first(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name in ("initdb", "pg_ctl"):
        (tmp_path / name).touch()
    monkeypatch.setenv("CDC_PG_BINDIR", str(tmp_path))
    assert find_bindir() == tmp_path
