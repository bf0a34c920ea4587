"""py-spy's raw stacks of ``cdc run`` → time per pipeline stage, per thread, per change.

A raw (collapsed) line is ``thread (TID)[: name];outer frame;...;inner frame COUNT``, each
frame ``function (file:line)``. Idle samples are included (``--idle``), so a thread's samples
add up to its wall time; each sample goes to the first stage whose rule matches, searching
from the innermost frame outwards. Waits are stages too: a thread that waits for the server or
for the other thread is where a pipeline loses its time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rule:
    stage: str
    function: str | None = None  # exact function name (py-spy's, e.g. "SinkWriter.submit")
    module: str | None = None  # a file ("cdc/pipeline/sink.py") or a package (".../pgoutput/")


# Order matters: waits first (their innermost frames are in threading/queue/psycopg), then the
# pipeline stages by module.
MAIN_RULES: Sequence[Rule] = (
    Rule("wait: sink queue full (back-pressure)", function="SinkWriter.submit"),
    Rule("wait: replication socket (idle)", function="ReplicationStream.poll"),
    Rule("decode (pgoutput)", module="cdc/pipeline/pgoutput/"),
    Rule("assemble (changes)", module="cdc/pipeline/changes.py"),
    Rule("assemble (changes)", module="cdc/pipeline/spill.py"),
    Rule("assemble (changes)", module="cdc/pipeline/catalog.py"),
    Rule("map + JSON (activity)", module="cdc/pipeline/activity.py"),
    Rule("map + JSON (activity)", module="cdc/pipeline/values.py"),
    Rule("batching", module="cdc/pipeline/batching.py"),
    Rule("receive (stream)", module="cdc/pipeline/stream.py"),
    Rule("loop (daemon)", module="cdc/pipeline/daemon.py"),
    Rule("start-up (imports, connect)", module="cdc/cli/main.py"),
)
SINK_RULES: Sequence[Rule] = (
    Rule("COPY encode (Python)", function="encode_copy_rows"),
    Rule("COPY encode (Python)", module="psycopg/_copy_base.py"),
    Rule("rollups (Python)", module="cdc/pipeline/rollups.py"),
    Rule("wait: server (COPY, commit)", function="Connection.wait"),
    Rule("sink other (Python)", module="cdc/pipeline/sink.py"),
)


def _matches(rule: Rule, function: str, path: str) -> bool:
    if rule.function is not None and rule.function != function:
        return False
    if rule.module is None:
        return True
    if rule.module.endswith("/"):
        return rule.module in path
    return path.endswith(rule.module)


def _frame(text: str) -> tuple[str, str]:
    function, _, where = text.rpartition(" (")
    return function, where.rsplit(":", 1)[0]


def _stage(frames: list[str], rules: Sequence[Rule]) -> str:
    if not frames:
        return "no Python frame (start, exit)"
    parsed = [_frame(frame) for frame in reversed(frames)]
    # The sink thread's idle wait is Queue.get called from SinkWriter._run: name it by pair.
    for index, (function, _path) in enumerate(parsed[:-1]):
        if function == "Queue.get" and parsed[index + 1][0] == "SinkWriter._run":
            return "wait: nothing to write"
    for rule in rules:
        for function, path in parsed:
            if _matches(rule, function, path):
                return rule.stage
    return "other"


@dataclass(frozen=True)
class StageTime:
    thread: str
    stage: str
    samples: int


def read_stages(raw: Path) -> tuple[list[StageTime], Counter[str], list[tuple[str, int]]]:
    """Samples per (thread, stage), samples per thread, and the main thread's hottest
    on-CPU functions (innermost frame, waits excluded)."""
    names: dict[str, str] = {}
    lines: list[tuple[str, list[str], int]] = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        head, *frames = stack.split(";")
        tid, _, name = head.partition(": ")
        if name:
            names[tid] = name
        lines.append((tid, frames, int(count)))
    per_stage: dict[tuple[str, str], int] = defaultdict(int)
    per_thread: Counter[str] = Counter()
    hot: Counter[str] = Counter()
    for tid, frames, samples in lines:
        thread = names.get(tid, tid)
        if thread == "MainThread":
            stage = _stage(frames, MAIN_RULES)
        elif thread == "activity-cdc-sink":
            stage = _stage(frames, SINK_RULES)
        else:
            stage = "other thread"
        per_stage[(thread, stage)] += samples
        per_thread[thread] += samples
        if thread == "MainThread" and not stage.startswith("wait") and frames:
            function, path = _frame(frames[-1])
            hot[f"{function} ({path})"] += samples
    stages = [StageTime(thread, stage, total) for (thread, stage), total in per_stage.items()]
    stages.sort(key=lambda item: (item.thread != "MainThread", -item.samples))
    return stages, per_thread, hot.most_common(12)
