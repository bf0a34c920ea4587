"""The web server's routes: the JSON API under ``/api`` and the two pages that use it.

Every route reads; none writes (the pool's sessions are read-only too, and the reader role
cannot write). Every route but the sign-in page and the static files (which hold no data)
asks for the token (:mod:`cdc.web.auth`). Every parameter goes through pydantic
(:mod:`cdc.web.params`): a bad one is a 400 with one line saying why, never a 500. Every
query is one of :mod:`cdc.store`'s, the same as ``cdc activity`` and ``cdc stats`` run.

The contract (``GET /api/openapi.json`` documents it in full):

* ``GET /api/activity``: a page, newest first: ``{"records", "next", "live_from"}``; the
  next page is ``?after=<next>``; ``live_from`` (first page only) is where ``/api/live``
  goes on without a gap;
* ``GET /api/activity/export?format=csv|jsonl``: every record of the filter, streamed;
* ``GET /api/record?lsn=&seq=``: one record and the other records of its transaction;
* ``GET /api/entities/{table}/{id}/history``: one row's records, oldest first;
* ``GET /api/stats?since=24h&by=category``: counts from the rollups;
* ``GET /api/health``: the pipeline as the store shows it;
* ``GET /api/live``: server-sent events, ``records`` each time some are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import StreamingResponse

from cdc import __version__
from cdc.config import Settings
from cdc.errors import CdcError, ConnectError
from cdc.store import Store, activity_stats
from cdc.store.health import pipeline_health, readable_tables
from cdc.web import models
from cdc.web.auth import SESSION_COOKIE, Sessions, TokenCheck
from cdc.web.guards import SECURITY_HEADERS, BodyLimit, RefusalLog, token_accepted
from cdc.web.params import (
    ExportParams,
    HistoryParams,
    LiveParams,
    PageParams,
    RecordKey,
    StatsParams,
)

log = logging.getLogger(__name__)

STATIC = resources.files("cdc.web") / "static"
TRANSACTION_SHOWN = 200  # records of a record's transaction shown with it
KEEPALIVE_S = 15.0
LIVE_RETRY_AFTER_S = 10
HEALTH_TABLES_S = 60.0  # a refused live view: when to ask again


@dataclass
class Web:
    """What every request shares: the settings, the read pool and the token check."""

    settings: Settings
    pool: ConnectionPool[Any]
    tokens: TokenCheck
    sessions: Sessions
    live_views: int = 0  # open now; counted on the event loop's thread only
    refusals: RefusalLog = field(default_factory=RefusalLog)  # wrong tokens, in the log
    _search_values: bool | None = field(default=None, repr=False)
    _health_tables: tuple[float, frozenset[str]] | None = field(default=None, repr=False)
    _relaxed_tsqueries: dict[str, str | None] = field(default_factory=dict, repr=False)

    def health_tables(self, store: Store) -> frozenset[str]:
        """The health's optional tables the reader may read (asked again every minute: a
        grant or a migration shows without a restart)."""
        now = time.monotonic()
        if self._health_tables is None or now - self._health_tables[0] > HEALTH_TABLES_S:
            self._health_tables = (now, readable_tables(store))
        return self._health_tables[1]

    @contextlib.contextmanager
    def store(self) -> Iterator[Store]:
        """A store on a pooled connection, for one request."""
        try:
            with self.pool.connection() as conn:
                store = Store(conn, self.settings)
                if self._search_values is not None:
                    store._search_values = self._search_values
                store.relaxed_tsqueries = self._relaxed_tsqueries  # kept across requests
                yield store
                self._search_values = store._search_values
        except PoolTimeout:
            raise ConnectError(
                "no database connection free (or the database does not answer); try again"
            ) from None


class SessionRequest(BaseModel):
    token: Annotated[str, Field(min_length=1, max_length=512)]


def create_app(web: Web) -> FastAPI:
    app = FastAPI(
        title="activity-cdc",
        version=__version__,
        description="The activity log, read-only: records, exports, statistics, health, live "
        "records. Authenticate with `Authorization: Bearer <token>` (CDC_WEB_TOKEN).",
        openapi_url=None,  # served below, behind the token
        docs_url=None,  # Swagger UI loads from a CDN: not offline, not under our CSP
        redoc_url=None,
    )
    app.state.web = web
    app.add_middleware(BodyLimit)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    _error_handlers(app)
    _api(app, web)
    _pages(app, web)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _one_line(exc)}, status_code=400)

    @app.exception_handler(ValueError)
    async def bad_value(_request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(exc).splitlines()[0]}, status_code=400)

    @app.exception_handler(CdcError)
    async def unavailable(_request: Request, exc: CdcError) -> JSONResponse:
        log.warning("request failed: %s", exc)
        return JSONResponse({"error": str(exc)}, status_code=503)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException, 404s, 405s, ...
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )


def _one_line(exc: RequestValidationError) -> str:
    """The first problem: ``limit: Input should be less than or equal to 1000``."""
    problems = []
    for error in exc.errors():
        where = [str(part) for part in error.get("loc", ()) if part not in ("query", "path")]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{'.'.join(where) or 'request'}: {message}")
    return "; ".join(problems[:3]).replace("\n", " ")


def _authenticated(request: Request) -> None:
    web: Web = request.app.state.web
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and web.sessions.valid(cookie):
        return
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if (
        scheme.lower() == "bearer"
        and credentials
        and token_accepted(web.tokens, web.refusals, credentials.strip(), request)
    ):
        return
    raise HTTPException(
        401,
        "sign in: send Authorization: Bearer <token> (CDC_WEB_TOKEN)",
        headers={"WWW-Authenticate": 'Bearer realm="activity-cdc"'},
    )


Authenticated = Depends(_authenticated)


def _api(app: FastAPI, web: Web) -> None:
    """Every route of the JSON API, in the order the OpenAPI document lists them."""
    _session_routes(app, web)
    _listing_routes(app, web)
    _record_routes(app, web)
    _dashboard_routes(app, web)


def _session_routes(app: FastAPI, web: Web) -> None:
    """The API's own document, and the pages' sign-in and sign-out."""

    @app.get("/api/openapi.json", include_in_schema=False, dependencies=[Authenticated])
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.post("/api/session", tags=["session"], status_code=204)
    def sign_in(body: SessionRequest, request: Request) -> Response:
        """The pages' sign-in: the token in, a session cookie out (HttpOnly, SameSite=Strict)."""
        if not token_accepted(web.tokens, web.refusals, body.token, request):
            raise HTTPException(401, "wrong token")
        response = Response(status_code=204)
        response.set_cookie(
            SESSION_COOKIE,
            web.sessions.issue(),
            max_age=int(web.sessions.lifetime_s),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.delete("/api/session", tags=["session"], status_code=204)
    def sign_out() -> Response:
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


def _listing_routes(app: FastAPI, web: Web) -> None:
    """Records of a filter: a page (keyset-paged) or all of them (an export)."""

    @app.get(
        "/api/activity",
        tags=["activity"],
        dependencies=[Authenticated],
        response_model=models.ActivityPage,
    )
    def activity(params: Annotated[PageParams, Query()]) -> Response:
        """Records newest first, filtered; keyset-paged by ``after``."""
        record_filter = params.record_filter()  # since=1h: before the database's now()
        with web.store() as store:
            live_from = None
            if params.cursor is None:
                # the page and the live position in one statement (one snapshot, one round
                # trip): /api/live?from=live_from then neither repeats nor skips a record
                page, live_from = store.first_page_json(record_filter, limit=params.limit + 1)
            else:
                page = store.records_json(
                    record_filter, before=params.cursor, limit=params.limit + 1
                )
        more = len(page) > params.limit
        page = page[: params.limit]
        return _rendered(
            records=_array(text for text, _ in page),
            next=json.dumps(page[-1][1] if more else None),
            live_from=json.dumps(live_from),
        )

    @app.get(
        "/api/activity/export",
        tags=["activity"],
        dependencies=[Authenticated],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
    )
    def export(params: Annotated[ExportParams, Query()]) -> StreamingResponse:
        """Every record of the filter (or the first ``limit``), newest first, as CSV or JSON
        Lines, rendered and streamed by PostgreSQL (one COPY): memory stays flat at any size."""
        record_filter = params.record_filter()  # since=1h: before the database's now()
        with web.store():  # no connection free: a 503 here, not in the middle of the body
            pass

        def body() -> Iterator[bytes]:
            with web.store() as store:
                yield from store.export(record_filter, fmt=params.format, limit=params.limit)

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        media = "text/csv; charset=utf-8" if params.format == "csv" else "application/x-ndjson"
        return StreamingResponse(
            body(),
            media_type=media,
            headers={
                "Content-Disposition": f'attachment; filename="activity-{stamp}.{params.format}"'
            },
        )


def _record_routes(app: FastAPI, web: Web) -> None:
    """One record with its transaction; one entity's history."""

    @app.get(
        "/api/record",
        tags=["activity"],
        dependencies=[Authenticated],
        response_model=models.RecordDetail,
    )
    def record(key: Annotated[RecordKey, Query()]) -> Response:
        """One record by its position, with the other records of its transaction."""
        with web.store() as store:
            found = store.record_json(key.lsn, key.seq)
            if found is None:
                raise HTTPException(404, f"no record at {key.lsn} seq {key.seq}")
            transaction = store.transaction_json(key.lsn, limit=TRANSACTION_SHOWN + 1)
        return _rendered(
            record=found,
            transaction=_array(transaction[:TRANSACTION_SHOWN]),
            transaction_truncated=json.dumps(len(transaction) > TRANSACTION_SHOWN),
        )

    @app.get(
        "/api/entities/{table}/{entity_id}/history",
        tags=["activity"],
        dependencies=[Authenticated],
        response_model=models.History,
    )
    def history(
        table: Annotated[str, models.PathText],
        entity_id: Annotated[str, models.PathText],
        params: Annotated[HistoryParams, Query()],
    ) -> Response:
        """Every record of one row of a table, oldest first (``cdc activity history``)."""
        with web.store() as store:
            records = store.history_json(table, entity_id, entity_type=params.entity_type)
        return _rendered(records=_array(records))


def _dashboard_routes(app: FastAPI, web: Web) -> None:
    """The dashboard's statistics and health, and the live stream of new records."""

    @app.get(
        "/api/stats",
        tags=["statistics"],
        dependencies=[Authenticated],
        response_model=models.Stats,
    )
    def stats(params: Annotated[StatsParams, Query()]) -> JSONResponse:
        """Totals, breakdowns and the trend of a window, from the rollups (``cdc stats``)."""
        with web.store() as store:
            result = activity_stats(store, params.length, by=tuple(dict.fromkeys(params.by)))
        return _json(result.as_json())

    @app.get(
        "/api/health",
        tags=["statistics"],
        dependencies=[Authenticated],
        response_model=models.Health,
    )
    def health() -> JSONResponse:
        """Lag, the last recorded commit, records per second, dead letters, slot, chain."""
        with web.store() as store:
            return _json(pipeline_health(store, readable=web.health_tables(store)).as_json())

    @app.get(
        "/api/live",
        tags=["activity"],
        dependencies=[Authenticated],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def live(request: Request, params: Annotated[LiveParams, Query()]) -> StreamingResponse:
        """Server-sent events: ``records`` (a JSON list, oldest first) each time records of
        the filter are written; the event id is the position to resume from (a reconnecting
        EventSource sends it back as Last-Event-ID)."""
        position = params.position
        resumed = request.headers.get("last-event-id")
        if resumed:
            try:
                position = LiveParams.model_validate({"from": resumed}).position
            except ValidationError:
                raise HTTPException(
                    400, f"Last-Event-ID: {resumed[:64]!r} is not a position (commit_lsn,seq)"
                ) from None
        return await _open_live_view(web, request, params, position)


async def _open_live_view(
    web: Web, request: Request, params: LiveParams, position: tuple[str, int] | None
) -> StreamingResponse:
    """A live view, or a 503 when ``live_views_allowed`` are open: each holds a connection of
    the pool for as long as it is open, and the pages need some too."""
    allowed = web.settings.web.live_views_allowed
    if web.live_views >= allowed:
        raise HTTPException(
            503,
            f"{allowed} live views are open, the most this server allows ([web] "
            "live_max_views); try again later",
            headers={"Retry-After": str(LIVE_RETRY_AFTER_S)},
        )
    events = _live_events(web, request, params, position)
    # Run the view up to its first event here (it counts itself before its first await, so
    # no other request slips in after the check): a view that cannot start (no connection
    # free, no store) is a 503 now, not a failure event in a 200 stream.
    first = await anext(events)
    return StreamingResponse(
        _then(first, events), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )


async def _then(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    yield first
    async for event in rest:
        yield event


async def _live_events(
    web: Web, request: Request, params: LiveParams, position: tuple[str, int] | None
) -> AsyncIterator[str]:
    poll_s = web.settings.web.live_poll_ms / 1000
    web.live_views += 1
    try:
        with contextlib.ExitStack() as stack:
            store = await anyio.to_thread.run_sync(stack.enter_context, web.store())
            follower = store.follow(params.record_filter())
            if position is None:
                await anyio.to_thread.run_sync(follower.start, 0)
            else:
                await anyio.to_thread.run_sync(follower.resume, position)
            yield "retry: 2000\n\n"
            try:
                quiet_s = 0.0
                while not await request.is_disconnected():
                    records = await anyio.to_thread.run_sync(follower.poll)
                    if records:
                        data = json.dumps([models.record_json(r) for r in records])
                        position = follower.position
                        yield "event: records\nid: {},{}\ndata: {}\n\n".format(*position, data)
                        quiet_s = 0.0
                    elif quiet_s >= KEEPALIVE_S:
                        yield ": keepalive\n\n"
                        quiet_s = 0.0
                    await asyncio.sleep(poll_s)
                    quiet_s += poll_s
            except CdcError as exc:
                log.warning("live view ended: %s", exc)
                yield f"event: failure\ndata: {json.dumps(str(exc))}\n\n"
    finally:
        web.live_views -= 1  # however the view ends: closed, failed, or never sent


def _json(data: Any) -> JSONResponse:
    return JSONResponse(data)


def _array(texts: Iterable[str]) -> str:
    return "[" + ",".join(texts) + "]"


def _rendered(**members: str) -> Response:
    """A JSON object from members already JSON text (records rendered by PostgreSQL: no row
    is decoded and encoded again here)."""
    body = ",".join(f"{json.dumps(name)}:{text}" for name, text in members.items())
    return Response("{" + body + "}", media_type="application/json")


def _pages(app: FastAPI, web: Web) -> None:
    def page(name: str, request: Request) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie or not web.sessions.valid(cookie):
            return RedirectResponse(f"/login?next=/{name}", status_code=303)
        return FileResponse(str(STATIC / f"{name}.html"), media_type="text/html")

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/monitor", status_code=303)

    @app.get("/monitor", include_in_schema=False)
    def monitor(request: Request) -> Response:
        return page("monitor", request)

    @app.get("/dashboard", include_in_schema=False)
    def dashboard(request: Request) -> Response:
        return page("dashboard", request)

    @app.get("/login", include_in_schema=False)
    def login() -> Response:
        return FileResponse(str(STATIC / "login.html"), media_type="text/html")
