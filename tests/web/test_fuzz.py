"""Fuzzing the API from its own OpenAPI document (schemathesis): valid and invalid values of
every parameter of every route, against the real store as the reader role. No input may
give a 500: a bad one is a 4xx with a one-line reason."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from cdc.web.server import WebServer
from tests.web.conftest import TOKEN

pytestmark = pytest.mark.integration

EXAMPLES = 40  # per route and mode: a few seconds each
# /api/live never ends by design; its parameters are /api/activity's, fuzzed there
ENDLESS = {"/api/live"}


def test_no_input_gives_a_server_error(server: WebServer, api: httpx.Client) -> None:
    schema = schemathesis.openapi.from_dict(api.get("/api/openapi.json").json())
    headers = {"Authorization": f"Bearer {TOKEN}"}
    failures: list[str] = []
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in ENDLESS:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def call(case: Any) -> None:
                nonlocal tried
                response = case.call(base_url=server.access.url, headers=headers, timeout=30)
                tried += 1
                if response.status_code >= 500:
                    failures.append(f"{case.method} {response.request.url}: {response.text}")
                elif response.status_code >= 400:
                    error = response.json().get("error")
                    assert isinstance(error, str) and "\n" not in error, response.text

            try:
                call()
            except Unsatisfiable:
                # no parameter to make invalid (GET /api/health): nothing negative to send
                assert mode is GenerationMode.NEGATIVE
    assert failures == []
    assert tried > 300
