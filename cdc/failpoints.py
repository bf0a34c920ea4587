"""Failpoints for crash tests: make the process die at a named point, on the Nth time.

``CDC_FAILPOINTS="sink.after_commit=3"`` kills the process with SIGKILL the third time the
sink has committed a batch (after the commit, before the daemon acknowledges it). Read once at
import; when unset, :func:`hit` is one global check. Never set in production.
"""

from __future__ import annotations

import os
import signal

_ARMED: dict[str, int] = {}
for _item in filter(None, os.environ.get("CDC_FAILPOINTS", "").split(",")):
    _name, _, _count = _item.partition("=")
    _ARMED[_name.strip()] = int(_count or "1")


def hit(name: str) -> None:
    if not _ARMED:
        return
    remaining = _ARMED.get(name)
    if remaining is None:
        return
    if remaining <= 1:
        os.kill(os.getpid(), signal.SIGKILL)
    _ARMED[name] = remaining - 1
