"""DSN helpers: show a connection string without its secrets."""

from __future__ import annotations

import re

from psycopg.conninfo import conninfo_to_dict, make_conninfo

_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``; safe for logs and error messages."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:  # an unparsable DSN may still hold a password: hide all of it
        return _URL_PASSWORD.sub(r"\1***@", dsn) if "://" in dsn else "(unparsable DSN)"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def describe_target(dsn: str) -> str:
    """host:port/dbname of a DSN, for one-line messages."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "(unparsable DSN)"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"
