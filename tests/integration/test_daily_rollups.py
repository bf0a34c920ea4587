"""The per-day rollups (migration 0023) on a real PostgreSQL: ``cdc partitions`` folds the
closed days from the per-hour rollups, folds a day again when records were recorded for it
late, and a long window's statistics are the same folded or not."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cdc.config import Settings
from cdc.control.partitions import apply_maintenance, plan_maintenance
from cdc.control.setup import setup
from cdc.store import activity_stats, open_store
from cdc.store.stats import DAY, ActivityStats
from tests.fix_pg import PgDatabase
from tests.integration.helpers import setup_and_settings
from tests.integration.test_store import DDL, TABLES, db_now, synthetic, write

pytestmark = pytest.mark.integration

PER_DAY = "SELECT bucket, sum(n) FROM activity.activity_per_day GROUP BY 1 ORDER BY 1"
PER_HOUR_OF_CLOSED_DAYS = (
    "SELECT date_bin('1 day', bucket, '2000-01-01Z'), sum(n) FROM activity.activity_per_hour "
    "WHERE bucket < date_bin('1 day', now(), '2000-01-01Z') GROUP BY 1 ORDER BY 1"
)


@pytest.fixture
def settings(pg: PgDatabase) -> Settings:
    return setup_and_settings(pg, DDL, TABLES)


def maintain(settings: Settings) -> list[str]:
    return list(
        apply_maintenance(settings, plan_maintenance(settings, ahead=3, retention_months=None))
    )


def stats_30d(settings: Settings) -> ActivityStats:
    with open_store(settings) as store:
        return activity_stats(store, timedelta(days=30), by=("category", "severity"))


@pytest.mark.every_server
def test_closed_days_fold_into_per_day_rollups_equal_to_their_hours(
    pg: PgDatabase, settings: Settings
) -> None:
    now = db_now(pg)
    past = [synthetic(now - timedelta(days=days, hours=1), 3) for days in (1, 2, 9, 20)]
    write(pg, settings, *past, synthetic(now, 2))

    plan = plan_maintenance(settings, ahead=3, retention_months=None)
    assert plan.describe()[-1].startswith("fold the per-hour rollups of 4 closed day(s)")
    done = list(apply_maintenance(settings, plan))
    assert done[-1].startswith("folded the per-hour rollups of 4 day(s)")

    per_day = pg.execute(PER_DAY)
    assert per_day == pg.execute(PER_HOUR_OF_CLOSED_DAYS) and len(per_day) == 4
    assert sum(n for _, n in per_day) == 12  # today's 2 stay in the per-hour rollups only
    assert maintain(settings) == []  # nothing stale: nothing to do


def test_a_long_window_counts_the_same_folded_or_not_and_late_records_after_the_next_fold(
    pg: PgDatabase, settings: Settings
) -> None:
    now = db_now(pg)
    write(
        pg,
        settings,
        synthetic(now - timedelta(days=3), 4),
        synthetic(now - timedelta(days=12), 2, category="compliance", severity="notice"),
        synthetic(now - timedelta(days=40), 7),  # the window before
        synthetic(now, 1),
    )
    unfolded = stats_30d(settings)
    assert maintain(settings)
    folded = stats_30d(settings)
    assert folded.window.grain == DAY and len(folded.trend) == 30
    assert (folded.total, folded.previous_total) == (unfolded.total, unfolded.previous_total)
    assert (folded.total, folded.previous_total) == (7, 7)
    assert folded.breakdowns == unfolded.breakdowns and folded.trend == unfolded.trend

    # recorded late, for a day already folded: in the per-hour rollups at once, in the
    # per-day ones (and so in a long window) from the next fold on
    write(pg, settings, synthetic(now - timedelta(days=3), 5))
    assert stats_30d(settings).total == 7
    assert maintain(settings)[0].startswith("folded the per-hour rollups of 1 day(s)")
    assert stats_30d(settings).total == 12
    assert pg.execute(PER_DAY) == pg.execute(PER_HOUR_OF_CLOSED_DAYS)


def test_retention_prunes_the_per_day_rollups_with_the_per_hour_ones(
    pg: PgDatabase, settings: Settings
) -> None:
    now = db_now(pg)
    write(pg, settings, synthetic(now - timedelta(days=400), 2), synthetic(now - timedelta(days=2)))
    maintain(settings)
    plan = plan_maintenance(settings, ahead=3, retention_months=6)
    done = list(apply_maintenance(settings, plan))
    assert any(line.startswith("deleted 1 per-day rollup rows") for line in done)
    assert [n for _, n in pg.execute(PER_DAY)] == [1]


@pytest.mark.every_server
def test_a_reader_made_before_the_per_day_rollups_may_read_them_and_nothing_more(
    pg: PgDatabase, settings: Settings
) -> None:
    role = f"old_reader_{pg.name[-8:]}"
    pg.execute(f"CREATE ROLE {role}; GRANT SELECT ON activity.activity_per_hour TO {role}")
    try:
        # the store as it was before migration 0023; cdc setup applies it
        pg.execute("DROP TABLE activity.activity_per_day")
        pg.execute("DELETE FROM activity.schema_migrations WHERE name LIKE '0023_%'")
        setup(settings)
        may = "SELECT has_table_privilege(%s, 'activity.activity_per_day', %s)"
        assert pg.execute(may, (role, "SELECT")) == [(True,)]
        assert pg.execute(may, (role, "INSERT")) == [(False,)]
    finally:
        pg.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
