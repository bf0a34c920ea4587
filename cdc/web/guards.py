"""What every response of ``cdc serve`` carries and what a request may not: the security
headers, the bound on request bodies, and the answer to a token that came too soon."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from cdc.web.auth import TokenCheck

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
