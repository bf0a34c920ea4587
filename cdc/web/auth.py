"""Who may read the activity log through the web server: one shared token.

The token comes from ``CDC_WEB_TOKEN``, or is checked against ``[web] token_hash`` (PBKDF2,
so a leaked config file does not give the token away), or, on a loopback address only, is
made up at start and printed. Scripts send ``Authorization: Bearer <token>``; the pages send
the token once to ``POST /api/session`` and then carry a signed, HttpOnly, SameSite=Strict
cookie (so a download link and an EventSource work, and the token is not kept in the page).

Every comparison with the token, or with a hash of it, is constant-time
(:func:`hmac.compare_digest`); the memory of refused tokens is a dict keyed by each
candidate's SHA-256, so its lookup tells nothing about the token. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum

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


class Verdict(Enum):
    """What :meth:`TokenCheck.verdict` made of a token."""

    ACCEPTED = "accepted"
    REFUSED = "refused"
    BUSY = "busy"  # a new candidate before the next derivation is allowed: not checked


# A wrong token costs a PBKDF2 derivation, ~0.3 s of a core by design, until the right one has
# been seen once. Unchecked, a script retrying a stale token or anyone who can reach the port
# would spend the database host's CPU at will (one core per ~3 requests/s). So a token already
# refused is refused from memory, and a new candidate is derived at most once per
# DERIVE_INTERVAL_S: in between, BUSY (HTTP 429 with Retry-After).
DERIVE_INTERVAL_S = 1.0
REFUSED_MEMORY = 1024  # digests of refused tokens kept (the oldest forgotten first)


@dataclass
class TokenCheck:
    """Accepts the one token: given in clear (from the environment) or as a PBKDF2 hash.

    Checking a hash costs PBKDF2's ~0.3 s on purpose; a token that passed once is remembered
    as its SHA-256 so that the next requests cost a hash, not a derivation; one that failed is
    remembered too, and new ones are derived at most once per ``derive_interval_s``."""

    token: str | None = None
    token_hash: str | None = None
    derive_interval_s: float = DERIVE_INTERVAL_S
    derivations: int = 0  # PBKDF2 derivations run (what the throttle bounds)
    _accepted: bytes | None = field(default=None, repr=False)
    _refused: OrderedDict[bytes, None] = field(default_factory=OrderedDict, repr=False)
    _next_derivation: float = field(default=0.0, repr=False)
    _pending: dict[bytes, threading.Event] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if (self.token is None) == (self.token_hash is None):
            raise ValueError("give the token or its hash")
        if self.token is not None:
            self._accepted = hashlib.sha256(self.token.encode()).digest()

    def accepts(self, candidate: str, now: float | None = None) -> bool:
        return self.verdict(candidate, now) is Verdict.ACCEPTED

    def verdict(self, candidate: str, now: float | None = None) -> Verdict:
        digest = hashlib.sha256(candidate.encode()).digest()
        with self._lock:
            if self._accepted is not None:
                accepted = hmac.compare_digest(digest, self._accepted)
                return Verdict.ACCEPTED if accepted else Verdict.REFUSED
            if digest in self._refused:
                return Verdict.REFUSED
            pending = self._pending.get(digest)
            if pending is None:
                now = time.monotonic() if now is None else now
                if now < self._next_derivation:
                    return Verdict.BUSY
                self._next_derivation = now + self.derive_interval_s
                self.derivations += 1
                self._pending[digest] = threading.Event()
        if pending is not None:
            # The same token is being checked for another request (scripts started together
            # with the right token): its answer, not a 429.
            pending.wait()
            with self._lock:
                accepted = self._accepted is not None and hmac.compare_digest(
                    digest, self._accepted
                )
            return Verdict.ACCEPTED if accepted else Verdict.REFUSED
        try:
            return self._derive(candidate, digest)
        finally:
            with self._lock:
                self._pending.pop(digest).set()

    def _derive(self, candidate: str, digest: bytes) -> Verdict:
        assert self.token_hash is not None
        _scheme, iterations, salt, expected = self.token_hash.split("$")
        derived = hashlib.pbkdf2_hmac(
            "sha256", candidate.encode(), bytes.fromhex(salt), int(iterations)
        )
        with self._lock:
            if hmac.compare_digest(derived, bytes.fromhex(expected)):
                self._accepted = digest
                return Verdict.ACCEPTED
            self._refused[digest] = None
            if len(self._refused) > REFUSED_MEMORY:
                self._refused.popitem(last=False)
            return Verdict.REFUSED

    def retry_after_s(self, now: float | None = None) -> int:
        """Whole seconds until a new candidate is derived again (at least 1)."""
        now = time.monotonic() if now is None else now
        return max(1, math.ceil(self._next_derivation - now))


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
