"""The JSON API of ``cdc serve`` against the real PostgreSQL fixture, reading as the
read-only role: every filter, keyset paging while records arrive, the live stream, export
counts, auth, bad parameters, security headers."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

from cdc.control.partitions import apply_maintenance, plan_maintenance
from cdc.store import RecordFilter, Store, open_store
from cdc.store.chain import record_verification, verify_chain
from cdc.store.health import pipeline_health, readable_tables
from cdc.web.auth import TokenCheck, Verdict, hash_token
from cdc.web.guards import CONTENT_SECURITY_POLICY
from cdc.web.server import Access, WebServer, serving
from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, setup_and_settings
from tests.web.conftest import (
    DDL,
    SCRIPT,
    TABLES,
    TOKEN,
    TRICKY,
    Platform,
    drop_reader,
    free_port,
    reader_settings,
)

pytestmark = pytest.mark.integration


def all_records(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every page of a filter, following `next`."""
    records: list[dict[str, Any]] = []
    after = None
    while True:
        query = {**params, **({"after": after} if after else {})}
        page = api.get("/api/activity", params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        records += body["records"]
        after = body["next"]
        if after is None:
            return records


def store_count(platform: Platform, f: RecordFilter) -> int:
    with open_store(platform.settings) as store:
        return sum(1 for _ in store.iter_records(f))


def test_the_first_page_is_the_newest_records_with_a_cursor_and_a_live_position(
    platform: Platform, api: httpx.Client
) -> None:
    body = api.get("/api/activity", params={"limit": 5}).json()
    assert body["records"][0]["action"] == "report.exported"
    assert len(body["records"]) == 5 and body["next"] == body["records"][-1]["cursor"]
    lsn, seq = body["live_from"].split(",")
    newest = max((r["commit_lsn"], r["seq"]) for r in all_records(api))
    assert (lsn, int(seq)) == newest  # the live stream starts where the store's head was
    occurred = [r["occurred_at"] for r in all_records(api, limit=7)]
    assert occurred == sorted(occurred, reverse=True)


def test_a_first_page_that_matches_nothing_still_gives_the_live_position(
    platform: Platform, api: httpx.Client
) -> None:
    everything = api.get("/api/activity", params={"limit": 1}).json()
    nothing = api.get("/api/activity", params={"entity_id": "nobody"}).json()
    assert nothing == {"records": [], "next": None, "live_from": everything["live_from"]}


def test_on_an_empty_store_live_from_the_first_page_gets_the_first_record(pg: PgDatabase) -> None:
    settings = setup_and_settings(pg, DDL, TABLES)
    reader = reader_settings(pg, settings)
    access = Access("127.0.0.1", free_port(), TokenCheck(token=TOKEN))
    try:
        with (
            serving(reader, access),
            httpx.Client(
                base_url=access.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
            ) as api,
        ):
            first = api.get("/api/activity").json()
            assert first["records"] == [] and first["live_from"] == "0/0,0"
            pg.execute("INSERT INTO notes VALUES (1, 1, 'the first')")
            drain(settings)
            (record,) = read_live(api, {"from": first["live_from"]}, want=1)
            assert record["entity_id"] == "1"
    finally:
        drop_reader(pg)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"source": "application"}, 1),
        ({"source": "database"}, 38),
        ({"category": "compliance"}, 5),
        ({"severity": "notice"}, 5),
        ({"min_severity": "warning"}, 2),  # the note's delete (error) + the report (warning)
        ({"operation": "update"}, 6),
        ({"operation": "delete"}, 1),
        ({"table": "public.notes"}, 2),
        ({"table": "investors"}, 36),
        ({"entity_type": "investor", "entity_id": "7"}, 2),
        ({"actor": "99"}, 5),
        ({"actor": "17"}, 16),  # 15 sign-ups and the email change of 7
        ({"action": "kyc.approved"}, 5),
        ({"search": "report q3"}, 1),
        ({"search": "kyc.approved"}, 5),
        ({"since": "1h"}, 39),
        ({"until": "2000-01-01"}, 0),
        ({"until": "1h"}, 0),
        ({"since": "1h", "search": "report q3"}, 1),
        ({"since": "2000-01-01T00:00:00Z", "until": "2999-01-01"}, 39),
        ({"category": "compliance", "actor": "99", "limit": 2}, 5),
    ],
)
def test_every_filter_selects_what_the_store_holds(
    platform: Platform, api: httpx.Client, params: dict[str, Any], expected: int
) -> None:
    found = all_records(api, **params)
    assert len(found) == expected
    assert len({r["position"] for r in found}) == expected  # no page repeats a record


def test_paging_while_records_arrive_has_no_gaps_and_no_repeats_and_live_takes_the_rest(
    platform: Platform, api: httpx.Client
) -> None:
    first = api.get("/api/activity", params={"limit": 4}).json()
    seen = [r["position"] for r in first["records"]]
    after = first["next"]
    platform.commit(
        "INSERT INTO investors SELECT g, 'late ' || g, 'pending', NULL, '5' "
        "FROM generate_series(100, 111) g"
    )
    while after:
        page = api.get("/api/activity", params={"limit": 4, "after": after}).json()
        seen += [r["position"] for r in page["records"]]
        after = page["next"]
    assert len(seen) == len(set(seen)) == 39  # the pages hold exactly what was there before

    live = read_live(api, {"from": first["live_from"]}, want=12)
    assert [r["entity_id"] for r in live] == [str(i) for i in range(100, 112)]
    assert not set(seen) & {r["position"] for r in live}


def read_live(api: httpx.Client, params: dict[str, Any], *, want: int) -> list[dict[str, Any]]:
    """Records from /api/live until ``want`` arrived."""
    got: list[dict[str, Any]] = []
    with api.stream("GET", "/api/live", params=params, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "records":
                got += json.loads(line.removeprefix("data: "))
                if len(got) >= want:
                    return got
            elif line.startswith("data: ") and event == "failure":
                raise AssertionError(line)
    return got


def test_live_sends_records_committed_after_it_started_matching_its_filter_only(
    platform: Platform, api: httpx.Client
) -> None:
    def commit_later() -> None:
        platform.commit("INSERT INTO notes VALUES (50, 1, 'first note')")
        platform.commit("UPDATE investors SET kyc_status = 'approved' WHERE id = 20")

    writer = threading.Timer(1.0, commit_later)
    writer.start()
    try:
        got = read_live(api, {"action": "kyc.approved"}, want=1)
    finally:
        writer.join()
    assert [(r["action"], r["entity_id"]) for r in got] == [("kyc.approved", "20")]


def test_a_record_reads_the_same_live_and_on_a_page(platform: Platform, api: httpx.Client) -> None:
    """Pages are rendered by PostgreSQL, the live stream's records in Python: the same JSON."""
    head = api.get("/api/activity", params={"limit": 1}).json()["live_from"]
    platform.commit("INSERT INTO notes VALUES (70, 1, 'seen twice')")
    (live,) = read_live(api, {"from": head}, want=1)
    (paged,) = api.get("/api/activity", params={"limit": 1}).json()["records"]
    assert live == paged
    lsn, seq = paged["position"].split(",")
    assert api.get("/api/record", params={"lsn": lsn, "seq": seq}).json()["record"] == paged


def test_the_live_stream_resumes_from_last_event_id(platform: Platform, api: httpx.Client) -> None:
    head = api.get("/api/activity", params={"limit": 1}).json()["live_from"]
    platform.commit("INSERT INTO notes VALUES (60, 1, 'while away')")
    response = read_live_headers(api, head)
    assert [r["entity_id"] for r in response] == ["60"]


def read_live_headers(api: httpx.Client, last_event_id: str) -> list[dict[str, Any]]:
    with api.stream(
        "GET", "/api/live", headers={"Last-Event-ID": last_event_id}, timeout=30
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: ":
                records: list[dict[str, Any]] = json.loads(line.removeprefix("data: "))
                return records
    return []


def test_a_live_view_beyond_the_configured_most_is_a_503_with_retry_after(
    platform: Platform,
) -> None:
    web = platform.reader.web.model_copy(update={"live_max_views": 1})
    settings = platform.reader.model_copy(update={"web": web})
    access = Access("127.0.0.1", free_port(), TokenCheck(token=TOKEN))
    with (
        serving(settings, access),
        httpx.Client(
            base_url=access.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ) as api,
    ):
        with api.stream("GET", "/api/live") as first:
            assert first.status_code == 200
            refused = api.get("/api/live")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "10"
            assert "1 live views are open" in refused.json()["error"]
            assert api.get("/api/activity", params={"limit": 1}).status_code == 200
        # the closed view's slot is free again once the server sees it gone (its next poll)
        deadline = time.monotonic() + 10
        while True:
            with api.stream("GET", "/api/live") as again:
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
            time.sleep(0.1)
        assert again.status_code == 200


def test_a_record_comes_with_its_transaction_and_an_entity_with_its_history(
    platform: Platform, api: httpx.Client
) -> None:
    (approval,) = all_records(api, action="kyc.approved", entity_id="3")
    lsn, seq = approval["position"].split(",")
    detail = api.get("/api/record", params={"lsn": lsn, "seq": seq}).json()
    assert detail["record"] == approval
    assert [r["entity_id"] for r in detail["transaction"]] == ["1", "2", "3", "4", "5"]
    assert detail["transaction_truncated"] is False
    assert detail["record"]["changes"]["kyc_status"] == {"old": "pending", "new": "approved"}

    history = api.get("/api/entities/public.investors/3/history").json()["records"]
    assert [r["action"] for r in history] == ["investor.insert", "kyc.approved"]
    assert api.get("/api/entities/investors/3/history").json()["records"] == history
    missing = api.get("/api/record", params={"lsn": "0/1", "seq": 0})
    assert missing.status_code == 404 and "no record" in missing.json()["error"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_export_holds_exactly_the_records_of_its_filter(
    platform: Platform, api: httpx.Client, fmt: str
) -> None:
    for params, f in [
        ({}, RecordFilter()),
        ({"table": "public.investors"}, RecordFilter(schema_name="public", table_name="investors")),
        (
            {"min_severity": "notice"},
            RecordFilter(severities=("notice", "warning", "error", "critical")),
        ),
    ]:
        response = api.get("/api/activity/export", params={**params, "format": fmt})
        assert response.status_code == 200
        assert "attachment" in response.headers["content-disposition"]
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(response.text)))
        else:
            rows = [json.loads(line) for line in response.text.splitlines()]
        assert len(rows) == store_count(platform, f)
    limited = api.get("/api/activity/export", params={"format": fmt, "limit": 3})
    if fmt == "csv":
        assert len(list(csv.DictReader(io.StringIO(limited.text)))) == 3
    else:
        assert len(limited.text.splitlines()) == 3

    # values exactly as stored, whatever characters they hold
    (page,) = all_records(api, entity_type="investor", entity_id="30")
    export = api.get(
        "/api/activity/export", params={"format": fmt, "entity_type": "investor", "entity_id": 30}
    )
    if fmt == "csv":
        (row,) = csv.DictReader(io.StringIO(export.text))
        assert json.loads(row["new"]) == page["new"] and row["context"] == ""
        assert row["commit_lsn"] == page["commit_lsn"] and int(row["seq"]) == page["seq"]
    else:
        (line,) = export.text.splitlines()
        row = json.loads(line)
        assert list(row) == [c for c in page if c not in ("table", "cursor", "position")]
        assert row["new"] == page["new"] and row["context"] is None
        assert datetime.fromisoformat(row["occurred_at"]) == datetime.fromisoformat(
            page["occurred_at"]
        )
    assert page["new"]["name"] == TRICKY


def test_stats_and_health_come_from_the_rollups_and_the_checkpoint(
    platform: Platform, api: httpx.Client
) -> None:
    stats = api.get("/api/stats", params={"since": "1h", "by": ["category", "table"]}).json()
    assert stats["total"] == 39
    assert set(stats["breakdowns"]) == {"category", "table"}
    by_category = {c["value"]: c["n"] for c in stats["breakdowns"]["category"]}
    assert by_category == {"investor_management": 31, "compliance": 5, "content": 2, "reporting": 1}
    assert sum(point["n"] for point in stats["trend"]) == 39

    health = api.get("/api/health").json()
    assert health["slot"]["slot"] == platform.settings.source.slot
    assert health["lag_bytes"] is not None and health["acknowledged_lsn"] is not None
    assert health["records_last_hour"] == 39 and health["dead_letters"] == 0
    assert health["chain_position"] == 39
    assert health["chain_verified_at"] is None  # never verified yet

    with platform.pg.connect() as conn:  # what cdc verify-chain does
        report = verify_chain(conn, "activity", "records")
        conn.autocommit = True
        assert record_verification(conn, "activity", report, since=None) is None
    health = api.get("/api/health").json()
    assert health["chain_verified_at"] is not None
    assert (health["chain_intact"], health["chain_checked"]) == (True, 39)


def test_after_the_store_ends_every_pooled_session_the_next_requests_are_served(
    platform: Platform, api: httpx.Client
) -> None:
    """A restart or failover of the store ends the web's pooled sessions: the pool finds them
    dead on checkout and connects again, so nobody gets an error for a store that is back."""
    with httpx.Client(  # several sessions in the pool: concurrent requests open them
        base_url=api.base_url, headers=api.headers, timeout=30
    ) as other:
        views = [
            threading.Thread(target=client.get, args=("/api/stats",)) for client in (api, other)
        ]
        for view in views:
            view.start()
        for view in views:
            view.join()
    ended = platform.pg.execute(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
        "WHERE application_name = 'activity-cdc web' AND datname = current_database()"
    )[0][0]
    assert ended >= 1
    answers = [api.get("/api/activity", params={"limit": 1}) for _ in range(ended + 2)]
    assert [answer.status_code for answer in answers] == [200] * (ended + 2), answers[0].text
    assert all(len(answer.json()["records"]) == 1 for answer in answers)


def test_a_month_of_stats_is_counted_in_days_by_the_reader_role(
    platform: Platform, api: httpx.Client
) -> None:
    list(apply_maintenance(platform.settings, plan_maintenance(platform.settings, ahead=3,
                                                               retention_months=None)))  # fmt: skip
    stats = api.get("/api/stats", params={"since": "30d"}).json()
    assert stats["window"]["grain_seconds"] == 86400 and len(stats["trend"]) == 30
    assert stats["total"] == 39 and sum(point["n"] for point in stats["trend"]) == 39


def test_health_leaves_out_what_the_reader_may_not_read(platform: Platform) -> None:
    role = f"reader_{platform.pg.slot.removeprefix('slot_')}"
    platform.pg.execute(f"REVOKE SELECT ON activity.dead_letters FROM {role}")
    with psycopg.connect(platform.reader.web_dsn, autocommit=True) as conn:
        store = Store(conn, platform.reader)
        assert readable_tables(store) == {"chain_head", "chain_verifications"}
        health = pipeline_health(store)
    assert health.dead_letters is None and health.chain_position == 39
    assert health.records_last_hour == 39 and health.slot is not None


def test_new_wrong_tokens_against_a_token_hash_cost_one_derivation_then_a_429(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    # [web] token_hash: each new wrong token would cost a PBKDF2 derivation (~0.3 s of a core)
    tokens = TokenCheck(token_hash=hash_token(TOKEN, iterations=1000), derive_interval_s=60)
    access = Access("127.0.0.1", free_port(), tokens)
    with serving(platform.reader, access), httpx.Client(base_url=access.url) as anonymous:
        stale = anonymous.get("/api/activity", headers={"Authorization": "Bearer stale"})
        assert stale.status_code == 401 and "sign in" in stale.json()["error"]
        for guess in ("guess1", "guess2"):
            busy = anonymous.get("/api/stats", headers={"Authorization": f"Bearer {guess}"})
            assert busy.status_code == 429
            assert 1 <= int(busy.headers["retry-after"]) <= 60
            assert busy.json()["error"].startswith("too many new tokens tried: try again in")
        signing_in = anonymous.post("/api/session", json={"token": "guess3"})
        assert signing_in.status_code == 429 and "retry-after" in signing_in.headers
        # the stale token again: refused from memory, a 401 as before, no derivation
        again = anonymous.get("/api/activity", headers={"Authorization": "Bearer stale"})
        assert again.status_code == 401
        assert tokens.derivations == 1
        # once the interval is over the right token is derived and accepted; from then on
        # every check is a hash: wrong tokens are 401s, never 429s
        assert tokens.verdict(TOKEN, now=time.monotonic() + 61) is Verdict.ACCEPTED
        right = {"Authorization": f"Bearer {TOKEN}"}
        assert anonymous.get("/api/activity?limit=1", headers=right).status_code == 200
        for guess in ("guess4", "guess5"):
            wrong = anonymous.get("/api/stats", headers={"Authorization": f"Bearer {guess}"})
            assert wrong.status_code == 401
        assert anonymous.post("/api/session", json={"token": TOKEN}).status_code == 204
        assert tokens.derivations == 2
    # the refusals are in the log, once per minute: the first at once, with its client
    refused = [r.getMessage() for r in caplog.records if r.name == "cdc.web"]
    assert refused == [
        "refused 1 request(s) for a wrong token, the last from 127.0.0.1 (a script with a "
        "stale token? the token is CDC_WEB_TOKEN or [web] token_hash)"
    ]


def test_a_request_body_is_refused_by_its_declared_length_before_it_is_read(
    server: WebServer,
) -> None:
    # the only body the API takes is a sign-in's token; anyone who can reach the port can send
    # one, and the server would read it whole before any check
    with httpx.Client(base_url=server.access.url) as anonymous:
        huge = anonymous.post(
            "/api/session",
            content=json.dumps({"token": "x" * 2_000_000}),
            headers={"Content-Type": "application/json"},
        )
        assert huge.status_code == 413
        assert huge.json() == {"error": "request body over 16384 bytes"}
        assert huge.headers["x-frame-options"] == "DENY"

        def pieces() -> Iterator[bytes]:
            yield b'{"token": '
            yield json.dumps(TOKEN).encode() + b"}"

        chunked = anonymous.post(
            "/api/session", content=pieces(), headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 411
        assert "Content-Length" in chunked.json()["error"]
        # a sign-in as the pages send it is unchanged
        assert anonymous.post("/api/session", json={"token": TOKEN}).status_code == 204


def test_every_route_refuses_a_request_without_the_token(server: WebServer) -> None:
    routes = [
        "/api/activity",
        "/api/activity/export",
        "/api/record?lsn=0/1&seq=0",
        "/api/entities/public.investors/1/history",
        "/api/stats",
        "/api/health",
        "/api/live",
        "/api/openapi.json",
    ]
    with httpx.Client(base_url=server.access.url) as anonymous:
        for route in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                response = anonymous.get(route, headers=headers)
                assert response.status_code == 401, route
                assert "sign in" in response.json()["error"]
        page = anonymous.get("/monitor", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/monitor"
        assert anonymous.post("/api/session", json={"token": "nope"}).status_code == 401

        signed_in = anonymous.post("/api/session", json={"token": TOKEN})
        assert signed_in.status_code == 204
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert anonymous.get("/api/activity?limit=1").status_code == 200  # the cookie
        assert anonymous.get("/monitor").status_code == 200
        assert TOKEN not in anonymous.get("/monitor").text
        anonymous.delete("/api/session")
        anonymous.cookies.clear()
        assert anonymous.get("/api/activity").status_code == 401


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/api/activity?limit=0", "limit"),
        ("/api/activity?limit=100000", "limit"),
        ("/api/activity?since=yesterday", "since: 'yesterday' is not a time"),
        ("/api/activity?severity=loud", "severity"),
        ("/api/activity?after=nonsense", "after: 'nonsense' is not a cursor"),
        ("/api/activity?table=a.b.c", "table"),
        ("/api/activity?entity_id=%00", "NUL"),
        ("/api/activity?colour=red", "colour"),
        ("/api/activity?min_severity=info&severity=", "severity"),
        ("/api/stats?since=0m", "longer than zero"),
        ("/api/stats?since=99999999d", "longer than 100 years"),
        ("/api/activity?since=99999999d", "longer than 100 years"),
        ("/api/stats?by=colour", "by"),
        ("/api/record?lsn=zz&seq=1", "not an LSN"),
        ("/api/activity/export?format=xml", "format"),
        ("/api/live?from=1", "not a position"),
        ("/api/entities/nosuch/1/history", "give the table 'nosuch' as schema.table"),
    ],
)
def test_a_bad_parameter_is_a_400_with_one_line_that_says_why(
    api: httpx.Client, path: str, reason: str
) -> None:
    response = api.get(path)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert reason in error and "\n" not in error and "Traceback" not in error


def test_values_stay_text_and_every_response_carries_the_security_headers(
    platform: Platform, api: httpx.Client
) -> None:
    (note,) = all_records(api, table="public.notes", operation="insert")
    assert note["new"]["body"] == SCRIPT  # stored and served as the value it is: JSON text
    response = api.get("/api/activity")
    assert response.headers["content-type"] == "application/json"
    for page in (response, api.get("/monitor"), api.get("/login"), api.get("/static/app.css")):
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY


def test_the_reader_role_can_read_the_store_and_write_nothing(platform: Platform) -> None:
    import psycopg

    with psycopg.connect(platform.reader.web.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM activity.records").fetchone() == (39,)
        for statement in (
            "DELETE FROM activity.records",
            "INSERT INTO activity.checkpoints VALUES ('x', '0/1', '0/1')",
            "UPDATE activity.activity_per_hour SET n = 0",
            "SELECT * FROM investors",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_the_openapi_document_lists_the_contract(api: httpx.Client) -> None:
    document = api.get("/api/openapi.json").json()
    assert {
        "/api/activity",
        "/api/activity/export",
        "/api/record",
        "/api/entities/{table}/{entity_id}/history",
        "/api/stats",
        "/api/health",
        "/api/live",
    } <= set(document["paths"])
    names = {p["name"] for p in document["paths"]["/api/activity"]["get"]["parameters"]}
    assert {
        "since", "until", "source", "category", "severity", "operation", "table",
        "entity_type", "entity_id", "actor", "action", "search", "limit", "after",
    } <= names  # fmt: skip


def test_a_bad_last_event_id_is_a_400(api: httpx.Client) -> None:
    response = api.get("/api/live", headers={"Last-Event-ID": "nonsense"})
    assert response.status_code == 400
    assert "Last-Event-ID: 'nonsense' is not a position" in response.json()["error"]
