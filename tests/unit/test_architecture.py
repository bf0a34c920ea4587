"""The house rules, checked on the source: imports go down the floors, modules (the compiled
core's Cython sources too) stay under 500 lines and functions under 80. What does not meet them
yet is listed below as a debt, with its size when it was listed; one that is paid must leave
the list (so the list is always the true state). No database needed: the modules are parsed,
not imported."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "cdc"

# Floors, lowest first. A module may import from its own floor's package and from lower
# floors, never from a higher one. The base is every module directly in cdc/.
FLOORS = ("base", "store", "pipeline", "cutover", "control", "service", "web", "demo", "cli")
ENTRY_POINTS = {"cdc.__main__"}  # `python -m cdc` runs the command line: above everything

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

# Not there yet: path -> lines and "path:function" -> lines, when listed.
MODULE_DEBTS: dict[str, int] = {}
FUNCTION_DEBTS: dict[str, int] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _floor(module: str) -> int:
    parts = module.split(".")
    room = parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else "base"
    if room not in FLOORS:
        raise AssertionError(f"{module}: cdc/{room}/ is on no floor; add it to FLOORS")
    return FLOORS.index(room)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "cdc":
                found.update(f"cdc.{alias.name}" for alias in node.names)
            elif node.module.startswith("cdc."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cdc."))
    return found


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def test_no_module_imports_from_a_higher_floor() -> None:
    upward = []
    for module, path in _modules().items():
        if module in ENTRY_POINTS or module == "cdc":
            continue
        for target in sorted(_imports(path)):
            if target == "cdc.__version__":
                continue
            if _floor(target) > _floor(module):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_modules_stay_under_500_lines_but_for_the_listed_debts() -> None:
    # The compiled core's Cython sources (.pyx, and the .pxi files they include) count too.
    compiled = [*PACKAGE.rglob("*.pyx"), *PACKAGE.rglob("*.pxi")]
    sizes = {
        _relative(path): len(path.read_text(encoding="utf-8").splitlines())
        for path in [*_modules().values(), *compiled]
    }
    assert any(name.endswith(".pyx") for name in sizes)  # the compiled core is looked at
    over = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert {name: lines for name, lines in over.items() if name not in MODULE_DEBTS} == {}
    # A paid debt leaves the list, so that the list stays the true state.
    assert {name: sizes.get(name, 0) for name in MODULE_DEBTS if name not in over} == {}


def test_functions_stay_under_80_lines_but_for_the_listed_debts() -> None:
    lengths: dict[str, int] = {}
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                key = f"{_relative(path)}:{node.name}"
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                lengths[key] = max(length, lengths.get(key, 0))
    over = {key: n for key, n in lengths.items() if n > MAX_FUNCTION_LINES}
    assert {key: n for key, n in over.items() if key not in FUNCTION_DEBTS} == {}
    assert {key: lengths.get(key, 0) for key in FUNCTION_DEBTS if key not in over} == {}
