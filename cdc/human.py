"""Sizes and durations as people read them in human output: ``1.3 MB``, ``2.1 s``.

Sizes count in 1024s with PostgreSQL's unit names (``pg_size_pretty``: kB, MB, GB, TB), so
that they read like the server's own settings (``max_slot_wal_keep_size = 50GB``). JSON output
keeps exact integers and seconds; only text for people goes through here.
"""

from __future__ import annotations

_SIZE_UNITS = ("bytes", "kB", "MB", "GB", "TB", "PB")
_SPANS = ((86_400.0, "d"), (3_600.0, "h"), (60.0, "min"))


def human_bytes(n: int | None) -> str:
    """``1.3 MB``; whole bytes below 1 kB (``512 bytes``); ``?`` when unknown."""
    if n is None:
        return "?"
    value = float(n)
    for unit in _SIZE_UNITS:
        # Compare what is printed: 1023.96 GB would print as "1024.0 GB", which is "1.0 TB".
        if abs(round(value, 1)) < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_seconds(seconds: float | None) -> str:
    """``2.1 s``, ``4.5 min``, ``3.0 h``, ``2.0 d``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    for size, unit in _SPANS:
        # Compare what is printed: 59.96 s would print as "60.0 s", which is "1.0 min".
        if abs(round(seconds, 1)) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"
