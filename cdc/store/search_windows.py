"""A full-text search's page, probed newest window first. Pure: it builds conditions,
:mod:`cdc.store.queries` puts them in the page statements, :class:`~cdc.store.Store` runs
the probes.

The GIN index gives every match of a search at once, unordered: the page then sorts them
all. Worse, a phrase (``"subscription 1"``, or a word the parser splits, ``o'neil``) is only
a candidate in the index: each candidate row is rechecked, its summary parsed again
(``to_tsvector``, ~5 µs), and a busy entity's words are thousands of candidates (a 5M-record
store: ~7,000 for ``"subscription 1"``, 40 ms). A probe reads instead:

* the candidates of the **relaxed** query (:func:`relaxed_tsquery`: each phrase operator
  made an AND), which the index answers exactly, without rechecking a row;
* only those of a **window**, ``occurred_at >= anchor - span`` (the anchor is the newest
  time the page can hold: the cursor's, ``until``'s, else now()), a cheap filter on the row;
* then the search itself, as a filter, on what is left.

The window is also given as a coarse bound, the start of its month, which prunes the
partitions; the exact bound is written so that no index answers it (``(...) IS TRUE``): an
index scan of a week of ``occurred_at`` to AND with the candidates costs more (~100 ms at
5M) than reading the candidates' rows.

A probe's page is the whole query's page as soon as it holds ``limit`` records: every record
outside the window is older than every record in it. Otherwise the next window, as wide as
the density of the matches found asks for (:func:`next_span`), or, when it found none or the
next would be wider than :data:`LAST_SPAN`, the unbounded query as it was. Each probe is one
statement (one snapshot).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from cdc.store.model import RecordCursor, RecordFilter

# The first window of a search's page; a window wider than the last is the unbounded query
# (a wide window reads about what the unbounded query reads: its partitions' candidates).
FIRST_SPAN = timedelta(days=1)
LAST_SPAN = timedelta(days=8)
# How much wider the next window is than what the matches of the last one ask for
# (limit / found of its span), so that one more probe is mostly the last.
WIDEN_MARGIN = 1.5

# A tsquery as PostgreSQL prints it: quoted lexemes ('' inside for a quote, an optional
# :* or weights), the operators, parentheses and blanks.
_TSQUERY_TOKEN = re.compile(r"'(?:[^']|'')*'(?::[*A-Da-d]+)?|<(?:-|[0-9]+)>|[!&|()]|\s+")


@dataclass(frozen=True)
class Window:
    """One probe: the records of ``span`` before the anchor; ``relaxed``: the tsquery text
    the index is asked (:func:`relaxed_tsquery`), None to ask it the search itself."""

    span: timedelta
    relaxed: str | None = None


def first_span(f: RecordFilter) -> timedelta | None:
    """The first window to probe a page of the filter in, None for the unbounded query at
    once: without a full-text search (the other filters' indexes read newest first and stop
    at the page)."""
    return None if f.search is None else _bounded(f, FIRST_SPAN)


def next_span(f: RecordFilter, span: timedelta, found: int, limit: int) -> timedelta | None:
    """The window after one of ``span`` that held ``found`` (fewer than ``limit``) records:
    as wide as their density asks for, with a margin; None (the unbounded query) when that
    is wider than :data:`LAST_SPAN`, or none was found (sparse matches: the unbounded query
    has few candidates to read)."""
    if found == 0:
        return None
    return _bounded(f, span * (WIDEN_MARGIN * limit / found))


def _bounded(f: RecordFilter, span: timedelta) -> timedelta | None:
    """``span``, or None when it reaches past the last window or past ``since`` given as a
    duration (--since 7d: what the unbounded query reads)."""
    if span > LAST_SPAN:
        return None
    if isinstance(f.since, timedelta) and f.until is None and span >= f.since:
        return None
    return span


def relaxed_tsquery(text: str) -> str | None:
    """The tsquery ``text`` with each phrase operator (``<->``, ``<N>``) made an AND: every
    row that matches the phrase matches it, and the GIN index answers it exactly. None when
    there is no phrase (nothing to relax), or a negation (relaxed, ``!('a' <-> 'b')`` would
    match fewer rows, not more), or text this does not read."""
    out: list[str] = []
    position = 0
    phrases = 0
    for token in _TSQUERY_TOKEN.finditer(text):
        if token.start() != position or token.group() == "!":
            return None
        position = token.end()
        phrase = token.group().startswith("<")
        phrases += phrase
        out.append("&" if phrase else token.group())
    if position != len(text) or not phrases:
        return None
    return "".join(out)


def search_condition(
    document: sql.Composable, search: str, window: Window | None
) -> tuple[sql.Composable, list[Any]]:
    """``document`` matches the search; in a window with a relaxed query: the index asked the
    relaxed query and the search checked as a filter (``ts_match_vq``, the function of
    ``@@``, which no index answers, so the planner leaves it for the rows the window keeps)."""
    if window is None or window.relaxed is None:
        return sql.SQL("{} @@ websearch_to_tsquery('simple', %s)").format(document), [search]
    condition = sql.SQL(
        "{0} @@ %s::tsquery AND ts_match_vq({0}, websearch_to_tsquery('simple', %s))"
    ).format(document)
    return condition, [window.relaxed, search]


def window_conditions(
    f: RecordFilter, before: RecordCursor | None, window: Window
) -> tuple[list[sql.Composable], list[Any]]:
    """``occurred_at >= anchor - span``, as a bound that prunes the partitions (the month it
    starts in) and the exact bound, which no index answers. LEAST ignores the NULLs of the
    anchors not given; only a lower bound, so a record dated after now() is in every
    window."""
    until = f.until if isinstance(f.until, datetime) else None
    until_ago = f.until if isinstance(f.until, timedelta) else None
    cursor_at = before.occurred_at if before is not None else None
    lower = "(LEAST(%s::timestamptz, now() - %s::interval, %s::timestamptz, now()) - %s::interval)"
    params = [until, until_ago, cursor_at, window.span]
    return [
        sql.SQL(f"occurred_at >= date_trunc('month', {lower})"),
        sql.SQL(f"(occurred_at >= {lower}) IS TRUE"),
    ], [*params, *params]
