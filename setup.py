"""Build script for what pyproject.toml cannot declare: the optional compiled core, and sql/ and
examples/ inside the wheel.

* ``cdc/pipeline/_core.pyx``, ``_copy_lines.pyx`` and ``_mapping.pyx`` are compiled by Cython
  into ``cdc.pipeline._core``, ``._copy_lines`` and ``._mapping`` (see
  cdc/pipeline/core.py). The extension is *optional*: where there is no C compiler (or no
  Python headers) the build warns and goes on, and the package runs its pure-Python reference
  implementation instead. ``pip install -e .``
  builds it in place, next to the sources.
* ``sql/`` and ``examples/`` live at the top of the repository; in a wheel they become
  ``cdc/_sql`` and ``cdc/_examples``, where cdc.sqlfiles finds them. An editable install reads
  them from the checkout and gets no copy (a stale copy would shadow the checkout's files).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
DATA_DIRS = {"sql": "cdc/_sql", "examples": "cdc/_examples"}


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for source, target in DATA_DIRS.items():
            shutil.copytree(HERE / source, Path(self.build_lib) / target, dirs_exist_ok=True)


class OptionalBuildExt(build_ext):
    """A compiled core that cannot be built is skipped with a warning, never a failed install:
    the pure-Python implementation is complete on its own (cdc/pipeline/core.py)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            self.warn(f"the compiled core was not built ({exc}); activity-cdc runs pure Python")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self.warn(f"{ext.name} was not built ({exc}); activity-cdc runs pure Python")


def extensions() -> list[Extension]:
    from Cython.Build import cythonize  # a build requirement (pyproject.toml)

    modules = [
        Extension(f"cdc.pipeline.{name}", [f"cdc/pipeline/{name}.pyx"], optional=True)
        for name in ("_core", "_copy_lines", "_mapping")
    ]
    return cythonize(modules, language_level=3, quiet=True)


setup(
    ext_modules=extensions(),
    cmdclass={"build_py": BuildPyWithData, "build_ext": OptionalBuildExt},
)
