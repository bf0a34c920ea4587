"""Reading the activity store: records with filters and keyset pages, one row's history,
following new records, and statistics from the rollups.

::

    with open_store(settings) as store:
        page = store.records(RecordFilter(category="kyc", since=...), limit=50)
        older = store.records(RecordFilter(...), before=page[-1].cursor)
        stats = activity_stats(store, timedelta(hours=24))

``model`` holds the types and the parsing of command-line values, ``queries`` composes the
statements (and says which index serves which filter), ``reader`` runs them, ``stats`` reads
the rollups. Writing is the sink's (cdc/pipeline/sink.py); partitions are
cdc/control/partitions.py's.
"""

from cdc.store.model import (
    SEVERITIES,
    STORED_COLUMNS,
    RecordCursor,
    RecordFilter,
    StoredRecord,
    parse_duration,
    parse_moment,
    parse_relative_moment,
    severities_for,
    split_table,
)
from cdc.store.reader import Follower, Store, open_store, resolve_table
from cdc.store.stats import DEFAULT_DIMENSIONS, DIMENSIONS, ActivityStats, Count, activity_stats

__all__ = [
    "DEFAULT_DIMENSIONS",
    "DIMENSIONS",
    "SEVERITIES",
    "STORED_COLUMNS",
    "ActivityStats",
    "Count",
    "Follower",
    "RecordCursor",
    "RecordFilter",
    "Store",
    "StoredRecord",
    "activity_stats",
    "open_store",
    "parse_duration",
    "parse_moment",
    "parse_relative_moment",
    "resolve_table",
    "severities_for",
    "split_table",
]
