"""Who may read the activity log through the web server: one shared token.

The token comes from ``CDC_WEB_TOKEN``, or is checked against ``[web] token_hash`` (PBKDF2,
so a leaked config file does not give the token away), or, on a loopback address only, is
made up at start and printed. Scripts send ``Authorization: Bearer <token>``; the pages send
the token once to ``POST /api/session`` and then carry a signed, HttpOnly, SameSite=Strict
cookie (so a download link and an EventSource work, and the token is not kept in the page).

Every comparison is constant-time (:func:`hmac.compare_digest`). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass, field

PBKDF2_ITERATIONS = 600_000  # OWASP's figure for PBKDF2-HMAC-SHA256 (2023)
SESSION_COOKIE = "cdc_session"


def hash_token(
    token: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """The ``[web] token_hash`` line of a token: ``pbkdf2_sha256$<iterations>$<salt>$<hash>``."""
    salt = secrets.token_bytes(16) if salt is None else salt
    derived = hashlib.pbkdf2_hmac("sha256", token.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${derived.hex()}"


def make_token() -> str:
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class TokenCheck:
    """Accepts the one token: given in clear (from the environment) or as a PBKDF2 hash.

    Checking a hash costs PBKDF2's ~0.3 s on purpose; a token that passed once is remembered
    as its SHA-256 so that the next requests cost a hash, not a derivation."""

    token: str | None = None
    token_hash: str | None = None
    _accepted: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.token is None) == (self.token_hash is None):
            raise ValueError("give the token or its hash")
        if self.token is not None:
            self._accepted = hashlib.sha256(self.token.encode()).digest()

    def accepts(self, candidate: str) -> bool:
        digest = hashlib.sha256(candidate.encode()).digest()
        if self._accepted is not None:
            return hmac.compare_digest(digest, self._accepted)
        assert self.token_hash is not None
        _scheme, iterations, salt, expected = self.token_hash.split("$")
        derived = hashlib.pbkdf2_hmac(
            "sha256", candidate.encode(), bytes.fromhex(salt), int(iterations)
        )
        if hmac.compare_digest(derived, bytes.fromhex(expected)):
            self._accepted = digest
            return True
        return False


@dataclass
class Sessions:
    """Signed session cookies: ``<expiry>.<hmac(key, expiry)>``. The key is made up at start,
    so restarting the server signs everyone out; nothing is stored per session."""

    lifetime_s: float
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def issue(self, now: float | None = None) -> str:
        expiry = str(int((time.time() if now is None else now) + self.lifetime_s))
        return f"{expiry}.{self._sign(expiry)}"

    def valid(self, cookie: str, now: float | None = None) -> bool:
        expiry, _, signature = cookie.partition(".")
        if not expiry.isdigit() or not hmac.compare_digest(signature, self._sign(expiry)):
            return False
        return int(expiry) > (time.time() if now is None else now)

    def _sign(self, expiry: str) -> str:
        return hmac.new(self.key, expiry.encode(), hashlib.sha256).hexdigest()
