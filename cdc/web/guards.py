"""What every response of ``cdc serve`` carries and what a request may not: the security
headers, the bound on request bodies, and the answer to a token that came too soon."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from cdc.web.auth import TokenCheck, Verdict

log = logging.getLogger("cdc.web")

# No inline script or style anywhere: scripts and styles come from /static only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# The one request body the API takes is a sign-in's token (at most 512 characters). The server
# reads a body whole before the route sees it, and anyone who can reach the port may send one:
# bodies are refused by their declared length, before they are read.
MAX_BODY_BYTES = 16 * 1024


class BodyLimit:
    """ASGI middleware: a request that carries a body must declare its length (411) and keep
    it under :data:`MAX_BODY_BYTES` (413). The server (h11) delivers no more than declared."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(scope["headers"])
            declared = headers.get(b"content-length")
            refusal = None
            if declared is None and b"transfer-encoding" in headers:
                refusal = 411, "send the request body with a Content-Length"
            elif declared is not None and (
                not declared.isdigit() or int(declared) > MAX_BODY_BYTES
            ):
                refusal = 413, f"request body over {MAX_BODY_BYTES} bytes"
            if refusal is not None:
                status, error = refusal
                response = JSONResponse(
                    {"error": error},
                    status_code=status,
                    headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def busy(tokens: TokenCheck) -> HTTPException:
    """A new token before the next one may be checked (cdc.web.auth, DERIVE_INTERVAL_S)."""
    after = tokens.retry_after_s()
    return HTTPException(
        429,
        f"too many new tokens tried: try again in {after} s",
        headers={"Retry-After": str(after)},
    )


# Requests refused for their token leave a line in the log, at most one per interval, with how
# many and the last client: a script with a stale token, or someone guessing, shows without
# flooding the log. (A request with no token at all, or an expired session, is not logged:
# that is a browser on its way to the sign-in page.)
REFUSAL_LOG_INTERVAL_S = 60.0


@dataclass
class RefusalLog:
    interval_s: float = REFUSAL_LOG_INTERVAL_S
    _count: int = 0
    _logged_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._count += 1
            if self._logged_at is not None and now - self._logged_at < self.interval_s:
                return
            count, since = self._count, self._logged_at
            self._count, self._logged_at = 0, now
        window = "" if since is None else f" in the last {now - since:.0f} s"
        log.warning(
            "refused %d request(s) for a wrong token%s, the last from %s "
            "(a script with a stale token? the token is CDC_WEB_TOKEN or [web] token_hash)",
            count,
            window,
            client,
        )


def token_accepted(tokens: TokenCheck, refusals: RefusalLog, token: str, request: Request) -> bool:
    """Whether ``token`` (sent with ``request``) is the token; a refusal is noted with the
    request's client, and a new token that came too soon raises the 429 of :func:`busy`."""
    verdict = tokens.verdict(token)
    if verdict is Verdict.ACCEPTED:
        return True
    refusals.note(request.client.host if request.client else "?")
    if verdict is Verdict.BUSY:
        raise busy(tokens)
    return False
