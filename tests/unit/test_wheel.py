"""The installed package, not the checkout: build the wheel, install it into a fresh virtualenv
and run it from outside the repository. The fresh venv gets the dependencies without the network
through a .pth line naming the project's site-packages; a directory added by a .pth line does not
get its own .pth files processed, so the editable install of the checkout stays out of sight
(checked: ``cdc`` is imported from the fresh venv).

The build skips the optional compiled core (``CC=false``: setup.py then warns and the package runs
its pure-Python implementation), which keeps this test to a few seconds of build; what is checked
here (the data files, the console script, the top-level names) does not depend on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _checkout_copy(target: Path) -> Path:
    """The files of the checkout (tracked and new, not ignored): building in a copy leaves no
    build/ or egg-info behind in the checkout, and never races another build of it."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _run(args: list[str | Path], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_wheel_installs_a_working_cdc_with_its_sql_and_examples_and_no_top_level_cli(
    tmp_path: Path,
) -> None:
    source = _checkout_copy(tmp_path / "src")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
         "-w", tmp_path / "dist"],
        cwd=source,
        CC="false",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("activity_cdc-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    distribution = "-".join(wheel.name.split("-")[:2])  # activity_cdc-<version>
    assert {name.split("/")[0] for name in names} == {"cdc", f"{distribution}.dist-info"}
    shipped_sql = {name.removeprefix("cdc/_sql/") for name in names if name.startswith("cdc/_sql/")}
    repo_sql = {p.relative_to(REPO / "sql").as_posix() for p in (REPO / "sql").rglob("*.sql")}
    assert repo_sql <= shipped_sql
    assert "cdc/_examples/platform.toml" in names

    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    fresh_site = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
             cwd=tmp_path).stdout.strip()
    )  # fmt: skip
    installed = _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         wheel],
        cwd=tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    (fresh_site / "project_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = _run(
        [python, "-c",
         "import importlib.util, cdc, cdc.sqlfiles as f; "
         "print(cdc.__file__); print(f.sql_dir()); print(f.example_path('platform.toml')); "
         "print(importlib.util.find_spec('cli'))"],
        cwd=outside,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    module, sql_dir, example, cli_spec = where.stdout.splitlines()
    assert Path(module).is_relative_to(fresh_site)  # the wheel's cdc, not the checkout's
    assert Path(sql_dir).is_relative_to(fresh_site) and Path(sql_dir, "migrations").is_dir()
    assert Path(example).is_relative_to(fresh_site) and Path(example).is_file()
    assert cli_spec == "None"

    helped = _run([venv / "bin" / "cdc", "--help"], cwd=outside)
    assert helped.returncode == 0, helped.stderr
    assert "Usage: cdc" in helped.stdout
