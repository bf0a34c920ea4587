"""The docs say what the code does: the blocks of docs/ that show the code's output are
compared with that output, so they cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from cdc.config import settings_from_mapping
from cdc.control.roles import role_sql

DOCS = Path(__file__).resolve().parents[2] / "docs"


def sql_block_after(text: str, marker: str) -> list[str]:
    start = text.index(marker)
    block = re.search(r"```sql\n(.*?)```", text[start:], re.S)
    assert block is not None, marker
    return block.group(1).splitlines()


def test_operations_md_lists_exactly_the_grants_of_print_role_sql() -> None:
    settings = settings_from_mapping(
        {"source": {"dsn": "host=db dbname=app"}, "tables": [{"name": "public.t"}]}, env={}
    )
    printed = [
        line for line in role_sql(settings).splitlines() if line and not line.startswith("--")
    ]
    documented = sql_block_after(
        (DOCS / "operations.md").read_text(), "cdc setup --print-role-sql [--role activity_cdc]"
    )
    assert documented == printed
