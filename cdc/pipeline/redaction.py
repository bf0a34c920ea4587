"""Redaction: what is stored instead of a redacted column's value (a marker, or a keyed hash),
and which columns of a table are redacted ([redaction] and the table's rules)."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable

from cdc.config import RedactionSettings, TableRules
from cdc.errors import ConfigError

Redactor = Callable[[str], str]  # a column's text value -> what is stored instead (plain text)


def redactor(redaction: RedactionSettings) -> Redactor:
    """The marker, or a keyed hash: HMAC-SHA256 keeps equal secrets comparable, unreadable."""
    if redaction.mode == "marker":
        marker = redaction.marker

        def to_marker(_text: str) -> str:
            return marker

        return to_marker
    key = os.environ.get(redaction.key_env, "")
    if not key:
        raise ConfigError(
            f"redaction.mode is 'hmac' but the environment variable {redaction.key_env} holding "
            "the key is not set; set it (a long random secret) or use mode = 'marker'"
        )
    secret = key.encode()

    def to_hash(text: str) -> str:
        return "hmac-sha256:" + hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()

    return to_hash


def redaction_matcher(redaction: RedactionSettings, rules: TableRules | None) -> re.Pattern[str]:
    explicit = [re.escape(name) for name in (rules.redact_columns if rules else ())]
    return re.compile(
        "|".join(f"(?:{p})" for p in [*explicit, *redaction.patterns]) or "(?!)", re.IGNORECASE
    )
