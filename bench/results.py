"""Where results go: one JSON file, and the markdown table and chart made from it (never from
anything else, so that a report can always be regenerated from a published JSON)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_PNG = "results.png"


def _clean(value: Any) -> Any:
    """JSON has no NaN: missing measurements become null."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def write_results(out: Path, results: dict[str, Any]) -> Path:
    """Write atomically: a crash mid-write must not leave half a JSON behind."""
    path = out / RESULTS_JSON
    partial = out / (RESULTS_JSON + ".tmp")
    partial.write_text(json.dumps(_clean(results), indent=2, sort_keys=False) + "\n")
    os.replace(partial, path)
    return path


def read_results(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / RESULTS_JSON).read_text())
    return data


def write_reports(out: Path) -> tuple[Path, Path]:
    from bench.report.chart import render_chart
    from bench.report.markdown import render_markdown

    results = read_results(out)
    markdown = out / RESULTS_MD
    markdown.write_text(render_markdown(results, chart_name=RESULTS_PNG))
    chart = out / RESULTS_PNG
    render_chart(results, chart)
    return markdown, chart
