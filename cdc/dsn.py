"""DSN helpers: show a connection string, or an error about one, without its secrets.

libpq quotes the text it could not parse (``missing "=" after "tail of the password"``), so an
error about a DSN is never shown as libpq wrote it: :func:`connect_failure` masks it first.
"""

from __future__ import annotations

import re

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cdc.errors import first_line

_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
# How a password is written in a DSN (keyword value, quoted or not; a URL's user info), for
# hiding the text as written as well as the value libpq parsed from it.
_WRITTEN_PASSWORDS = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'?|\S+)|://[^:/@]*:([^@]*)@")

UNPARSABLE = (
    "it is not a valid connection string (put a value that holds a space or a quote in single "
    "quotes, with \\' for a quote inside, or use a postgresql:// URL)"
)


def dsn_problem(dsn: str) -> str | None:
    """Why the DSN cannot be parsed, in words that quote none of it; None: it parses."""
    try:
        conninfo_to_dict(dsn)
    except Exception:
        return UNPARSABLE
    return None


def require_parsable(dsn: str, role: str) -> None:
    """A ConfigError (exit 4) for a DSN libpq cannot parse, before anything hands it to libpq,
    whose parse error would quote it (an unquoted password with a space shows its tail)."""
    from cdc.errors import ConfigError

    if dsn_problem(dsn):
        raise ConfigError(
            f"[{role}] dsn (or CDC_{role.upper()}_DSN): {UNPARSABLE}; fix it and run the "
            "command again"
        )


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``; safe for logs and error messages."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:  # an unparsable DSN may still hold a password: hide all of it
        return _URL_PASSWORD.sub(r"\1***@", dsn) if "://" in dsn else "(unparsable DSN)"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def mask_secrets(text: str, dsn: str) -> str:
    """``text`` (a driver's message about ``dsn``) with the DSN's password hidden.

    An unparsable DSN has no password we could find, and libpq's parse errors quote the DSN:
    such a message is replaced as a whole."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return UNPARSABLE
    secrets = {str(params["password"])} if params.get("password") else set()
    for match in _WRITTEN_PASSWORDS.finditer(dsn):
        written = match.group(1) or match.group(2) or ""
        secrets.update({written, written.strip("'")})
    for secret in sorted(secrets - {""}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def connect_failure(exc: BaseException, dsn: str) -> str:
    """The first line of a connection error, safe to print: see :func:`mask_secrets`."""
    return mask_secrets(first_line(exc), dsn)


def describe_target(dsn: str) -> str:
    """host:port/dbname of a DSN, for one-line messages."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "(unparsable DSN)"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"
