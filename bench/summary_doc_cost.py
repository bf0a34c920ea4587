"""What the daemon would spend building the summary's full-text document itself (the other side
of ``bench.summary_doc_ab``): a Cython prototype (``bench/summary_doc_proto.pyx``, compiled here
by pyximport) splits a summary into its space-separated pieces, takes each from a cache of the
server's tokenisation (entity types, verbs, column names, actions) or, for a plain alphanumeric
piece (an id, an actor), lowercases it, merges the positions, sorts the lexemes and packs
tsvector's binary form. Platform-shaped summaries (half inserts, half updates of 1-4 columns);
CPU per summary, best of 7 passes.

    python -m bench.summary_doc_cost
"""

from __future__ import annotations

import random
import time
from typing import Any

import pyximport  # type: ignore[import-untyped]

TYPES = ["subscription", "approval", "user", "token_allocation", "compliance_check", "investor"]
COLUMNS = ["approved_at", "updated_at", "updated_by", "status", "score", "checked_at", "email"]
VERBS = ["updated", "created", "deleted", "by"]


def _tokens(piece: str) -> tuple[tuple[tuple[bytes, tuple[int, ...]], ...], int]:
    """A stand-in for the server's tokenisation of a vocabulary piece (the cost is the same
    whatever the lexemes): dotted names whole, others split at underscores."""
    core = piece.strip("(),:")
    words = [core] if "." in core else [word for word in core.split("_") if word]
    return tuple((word.encode(), (n + 1,)) for n, word in enumerate(words)), len(words)


def main() -> None:
    pyximport.install(language_level=3)
    from bench import summary_doc_proto  # type: ignore[attr-defined]

    cache: dict[str, Any] = {}
    for name in TYPES:
        cache[name] = _tokens(name)
        for action in ("update", "insert"):
            cache[f"({name}.{action})"] = _tokens(f"{name}.{action}")
    for column in COLUMNS:
        cache[column] = cache[column + ","] = _tokens(column)
    for verb in VERBS:
        cache[verb] = _tokens(verb)
    rng = random.Random(1)
    summaries = []
    for _ in range(20_000):
        name = rng.choice(TYPES)
        if rng.random() < 0.5:
            changed = ", ".join(rng.sample(COLUMNS, rng.randint(1, 4)))
            summaries.append(
                f"{name} {rng.randint(1, 99999)} updated by {rng.randint(1, 5000)}: {changed} "
                f"({name}.update)"
            )
        else:
            summaries.append(
                f"{name} {rng.randint(1, 99999)} created by {rng.randint(1, 5000)} ({name}.insert)"
            )
    build = summary_doc_proto.summary_doc
    assert all(build(summary, cache) is not None for summary in summaries)
    best = min(_pass(build, summaries, cache) for _ in range(7))
    print(f"summary document in the daemon: {best:.2f} µs per summary (best of 7 passes)")


def _pass(build: Any, summaries: list[str], cache: dict[str, Any]) -> float:
    started = time.process_time()
    for summary in summaries:
        build(summary, cache)
    return (time.process_time() - started) / len(summaries) * 1e6


if __name__ == "__main__":
    main()
