"""Load the statements kept in ``sql/`` (and the example config) by name.

In a checkout they are in ``<repo>/sql``; in an installed wheel, in ``cdc/_sql`` (see
pyproject.toml). Files are read once and cached.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from psycopg import sql

_PACKAGED = Path(__file__).parent / "_sql"
_CHECKOUT = Path(__file__).parent.parent / "sql"
_PACKAGED_EXAMPLES = Path(__file__).parent / "_examples"
_CHECKOUT_EXAMPLES = Path(__file__).parent.parent / "examples"


def sql_dir() -> Path:
    return _PACKAGED if _PACKAGED.is_dir() else _CHECKOUT


def sql_path(name: str) -> Path:
    return sql_dir() / name


def example_path(name: str) -> Path:
    """A file of ``examples/`` (the shipped default config), in a checkout or the wheel."""
    base = _PACKAGED_EXAMPLES if _PACKAGED_EXAMPLES.is_dir() else _CHECKOUT_EXAMPLES
    return base / name


@cache
def sql_text(name: str) -> str:
    return sql_path(name).read_text(encoding="utf-8")


def sql_template(name: str, **identifiers: str) -> sql.Composed:
    """The file as a statement with ``{name}`` placeholders bound to quoted identifiers."""
    return sql.SQL(sql_text(name)).format(
        **{key: sql.Identifier(value) for key, value in identifiers.items()}
    )
