"""Full-text pages of the JSON API over records spread across months: the windowed probes of
a search (cdc.store.search_windows) give the unwindowed query's pages, through ``after``,
with no gap and no repeat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from psycopg import sql

from cdc.store import RecordFilter, queries
from tests.web.conftest import Platform

pytestmark = pytest.mark.integration

# (hours ago, entity id): busy in the last days, then sparse back to four months ago
SPREAD = [(h, 7) for h in range(1, 60, 3)] + [(24 * d + 5, 77 if d % 3 else 7) for d in range(120)]


def write_spread(platform: Platform) -> None:
    now: datetime = platform.pg.execute("SELECT now()")[0][0]
    rows: list[tuple[Any, ...]] = []
    for i, (hours, entity) in enumerate(SPREAD):
        summary = f"investor {entity} reviewed by 9 (investor.review)"
        lsn = 0x7000_0000 + i * 0x40
        for seq in range(1 + i % 2):  # some transactions of two records at one time
            rows.append((now.astimezone(UTC) - timedelta(hours=hours), str(entity), summary,
                         f"0/{lsn:X}", seq))  # fmt: skip
    with platform.pg.connect() as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO activity.records (occurred_at, source, operation, action, category, "
            "severity, schema_name, table_name, entity_type, entity_id, summary, commit_lsn, seq) "
            "VALUES (%s, 'database', 'update', 'investor.review', 'investor_management', "
            "'info', 'public', 'investors', 'investor', %s, %s, %s::pg_lsn, %s)",
            rows,
        )


def every_position(platform: Platform, search: str) -> list[str]:
    """The unwindowed query's records of the search, newest first, as positions."""
    query, params = queries.page_query(
        sql.Identifier("activity", "records"), "activity", RecordFilter(search=search),
        before=None, limit=None, columns=sql.SQL("r.commit_lsn::text || ',' || r.seq"),
    )  # fmt: skip
    with platform.pg.connect() as conn:
        return [row[0] for row in conn.execute(query, params).fetchall()]


@pytest.mark.parametrize("search", ['"investor 7"', '"investor 77"', "investor", '"by 9" 7'])
@pytest.mark.parametrize("limit", [1, 7, 25])
def test_search_pages_through_after_hold_every_match_once_in_order(
    platform: Platform, api: httpx.Client, search: str, limit: int
) -> None:
    write_spread(platform)
    expected = every_position(platform, search)
    assert len(expected) > 3 * limit or search == '"investor 77"'
    seen: list[str] = []
    params: dict[str, Any] = {"search": search, "limit": limit}
    while True:
        page = api.get("/api/activity", params=params).json()
        seen += [r["position"] for r in page["records"]]
        if page["next"] is None:
            break
        assert page["next"] == page["records"][-1]["cursor"]
        params["after"] = page["next"]
    assert seen == expected
