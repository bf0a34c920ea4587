"""Hostile data in rows and names: recorded exactly (equal to PostgreSQL's to_jsonb), never
breaking the daemon or the SQL it runs."""

from __future__ import annotations

import json

import pytest

from cdc.pipeline.stream import SESSION_OPTIONS
from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, setup_and_settings

pytestmark = pytest.mark.integration

# A table and columns whose names would break naive SQL or COPY: quotes, semicolons,
# backslashes, tabs, newlines, unicode.
TABLE = 'we"ird; DROP TABLE x --'
COLUMNS = ["id", 'na"me', "semi;colon", "back\\slash", "tab\tcol", "new\nline", "ünï côdé 🙂"]


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


VALUES = [
    "x" * 2_000_000,  # a 2 MB value in each of 6 columns (TOASTed, many COPY buffers)
    "".join(chr(c) for c in range(1, 32)) + "\\N\\t\\\\",  # every control char, COPY escapes
    "\u202eRTL override\u200bzero width\u0301combining\ufeffBOM\U0010fffd",  # valid oddities
    "",  # empty, not NULL
    None,
    "'; DROP TABLE activity.records; --",
]
DEEP = json.dumps(json.loads("[" * 500 + "]" * 500))  # nesting jsonb accepts, deeply


def test_hostile_values_and_names_are_recorded_exactly(pg: PgDatabase) -> None:
    cols = ", ".join(f"{quoted(c)} {'int PRIMARY KEY' if c == 'id' else 'text'}" for c in COLUMNS)
    ddl = f"CREATE TABLE public.{quoted(TABLE)} ({cols}, deep jsonb)"
    qualified = f'public."{TABLE.replace(chr(34), chr(34) * 2)}"'
    settings = setup_and_settings(pg, ddl, [{"name": qualified}], redaction={"patterns": []})
    expected = {}
    names = ", ".join(quoted(c) for c in COLUMNS)
    with pg.connect(options=SESSION_OPTIONS) as conn:
        for i, value in enumerate(VALUES, 1):
            row = [i] + [value] * (len(COLUMNS) - 1) + [DEEP]
            conn.execute(
                f"INSERT INTO public.{quoted(TABLE)} ({names}, deep) VALUES "
                f"({', '.join(['%s'] * (len(COLUMNS) + 1))})",
                row,
            )
            expected[str(i)] = conn.execute(
                f"SELECT to_jsonb(t) FROM public.{quoted(TABLE)} t WHERE id = %s", (i,)
            ).fetchone()[0]  # type: ignore[index]
    stats = drain(settings)
    assert stats.records == len(VALUES)
    got = dict(
        pg.execute("SELECT entity_id, new FROM activity.records WHERE table_name = %s", (TABLE,))
    )
    assert set(got) == set(expected)
    for key in expected:
        assert got[key] == expected[key], key
    assert pg.execute("SELECT to_regclass('activity.records') IS NOT NULL")[0][0]
