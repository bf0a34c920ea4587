"""What ``cdc check`` reports: one :class:`Check` per verified prerequisite, and the exit code
the worst failing one decides (:data:`EXIT_CODE_RANK`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warn", "fail"]

# What a failed check means, as the exit codes of cdc.errors:
SERVER = 5  # server settings, connections, privileges (PrerequisiteError, ConnectError)
CONFIG = 4  # a configured table does not exist (ConfigError)
STORE = 8  # the activity store is missing or behind (SinkError)
SETUP = 6  # publication, replica identity, slot (SlotError)

# Worst first; a failed check run exits with the first of these that failed.
EXIT_CODE_RANK = (SERVER, CONFIG, STORE, SETUP)


@dataclass(frozen=True)
class Check:
    """One verified prerequisite. ``message`` says what was found and, when not ok, the fix."""

    name: str
    status: Status
    message: str
    exit_code: int = 0  # what a failure of this check means (see EXIT_CODE_RANK)

    def line(self) -> str:
        if self.status == "ok":
            return f"ok   {self.message}"
        return f"{'FAIL' if self.status == 'fail' else 'warn'} {self.name}: {self.message}"


@dataclass
class CheckReport:
    checks: list[Check] = field(default_factory=list)

    def ok(self, name: str, message: str) -> None:
        self.checks.append(Check(name, "ok", message))

    def warn(self, name: str, message: str) -> None:
        self.checks.append(Check(name, "warn", message))

    def fail(self, name: str, message: str, exit_code: int) -> None:
        self.checks.append(Check(name, "fail", message, exit_code))

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if check.status == "fail"]

    @property
    def exit_code(self) -> int:
        codes = {check.exit_code for check in self.failed}
        for code in EXIT_CODE_RANK:
            if code in codes:
                return code
        return max(codes, default=0)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": not self.failed,
            "exit_code": self.exit_code,
            "checks": [asdict(check) for check in self.checks],
        }


def shown(names: list[str], limit: int = 4) -> str:
    extra = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {extra} more" if extra > 0 else "")
