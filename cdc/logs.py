"""Logging: one line per event, as text (``human``) or one JSON object (``json``), and secrets
masked on the way out.

:func:`configure_logging` installs one handler on the root logger (replacing the one it
installed before). Its :class:`SecretFilter` rewrites every record's message so that a
password in a DSN (``password=...``) or URL (``postgresql://user:pw@host``) never reaches the
output, even when a message or an exception text contains a whole DSN; the formatters mask
the final line once more, which covers tracebacks too.

JSON lines carry ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the record's
extras (``log.info("...", extra={"slot": "x"})``) and ``exc`` for a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["human", "json"]

_MASK = "***"

# password=secret, password = 'se cret', PGPASSWORD=x, db_password=x, ?password=x&...
_KEYWORD = re.compile(
    r"(?i)(\b\w*(?:password|passwd|pwd)\s*=\s*)('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,'\"]+)"
)
# "password": "secret" (a JSON rendering of a mapping)
_JSON_KEY = re.compile(r"(?i)(\"\w*(?:password|passwd|pwd|secret)\"\s*:\s*)\"(?:[^\"\\]|\\.)*\"")
# scheme://user:secret@host
_URL_USERINFO = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@\s]*@")


def mask_secrets(text: str) -> str:
    """``text`` with anything that looks like a password in a DSN or URL replaced by ***."""
    if "pass" not in text.lower() and "pwd" not in text.lower() and "://" not in text:
        return text  # the common case: nothing to look for
    text = _URL_USERINFO.sub(rf"\1{_MASK}@", text)
    text = _KEYWORD.sub(rf"\1{_MASK}", text)
    return _JSON_KEY.sub(rf'\1"{_MASK}"', text)


class SecretFilter(logging.Filter):
    """Masks passwords in the message (after %-formatting) and in string extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, mask_secrets(value))
        return True


# Attributes every LogRecord has; anything else was passed through ``extra``.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


class HumanFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, extras, exc. Every value is
    masked before it is encoded (masking the encoded line could cut through a JSON string)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_secrets(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in data:
                data[key] = _masked_value(value)
        if record.exc_info:
            data["exc"] = mask_secrets(self.formatException(record.exc_info))
        elif record.exc_text:
            data["exc"] = mask_secrets(record.exc_text)
        return json.dumps(data, default=str, ensure_ascii=False)


def _masked_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_secrets(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    text = json.dumps(value, default=str, ensure_ascii=False)
    masked = mask_secrets(text)
    return value if masked == text else masked


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the event (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_installed: logging.Handler | None = None


def configure_logging(level: str = "info", fmt: LogFormat = "human") -> logging.Handler:
    """Log to stderr at ``level`` (debug, info, warning, error) in format ``fmt``."""
    global _installed
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    handler.addFilter(SecretFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    _installed = handler
    return handler
