"""results.json → results.png: one panel per part, each with its baseline and its target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: CI and servers

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import ScalarFormatter

MISSED = "#c0392b"
MET = "#27ae60"
BASE = "#7f8c8d"
OURS = "#2c7fb8"
OTHER = "#e69f00"


def _unavailable(ax: Axes, title: str, section: dict[str, Any] | None) -> bool:
    if section and section.get("status") == "ok":
        return False
    ax.set_title(title)
    ax.axis("off")
    text = "not run" if section is None else "failed"
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color=BASE)
    return True


def _label_bars(ax: Axes, bars: Any, labels: list[str]) -> None:
    for bar, label in zip(bars, labels, strict=True):
        ax.annotate(
            label,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 2),
            textcoords="offset points",
        )


def _write(ax: Axes, section: dict[str, Any] | None) -> None:
    title = "1. Write path (TPS, x no auditing)"
    if _unavailable(ax, title, section):
        return
    assert section is not None
    modes = [m for m in ("none", "triggers", "cdc", "cdc_apart") if m in section["modes"]]
    tps = [section["modes"][mode]["tps"] for mode in modes]
    ratios = [1.0, *(section["ratios_to_none"][mode] for mode in modes[1:])]
    met = section["targets"][0]["met"]
    colors = [BASE, OTHER, *([MET if met else MISSED] * (len(modes) - 2))]
    bars = ax.bar(modes, tps, color=colors)
    _label_bars(ax, bars, [f"{value:,.0f}\nx{r:.2f}" for value, r in zip(tps, ratios, strict=True)])
    ax.axhline(tps[0] * 0.9, color=OURS, linestyle="--", linewidth=1, label="target 0.90 x none")
    ax.set_ylabel("transactions / s")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper right")
    ax.margins(y=0.25)


def _drain(ax: Axes, section: dict[str, Any] | None) -> None:
    title = "2. Drain (changes/s, x pg_recvlogical)"
    if _unavailable(ax, title, section):
        return
    assert section is not None
    names = ["pg_recvlogical", "cdc", "python_peer"]
    labels = ["pg_recvlogical", "cdc run --drain", "psycopg2+\npypgoutput"]
    rates = [section["changes_per_s"][name] for name in names]
    ratios = [section["ratios_to_pg_recvlogical"][name] for name in names]
    met = section["targets"][0]["met"]
    bars = ax.bar(labels, rates, color=[BASE, MET if met else MISSED, OTHER])
    _label_bars(ax, bars, [f"{v:,.0f}\nx{r:.2f}" for v, r in zip(rates, ratios, strict=True)])
    ax.axhline(rates[0] * 0.6, color=OURS, linestyle="--", linewidth=1, label="target 0.6 x")
    decoders = section["decoders"]
    ax.set_xlabel(f"decoders alone: cdc {decoders['ratio_cdc_to_pypgoutput']:.1f}x pypgoutput")
    ax.set_ylabel("row changes / s")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.margins(y=0.25)


def _latency(ax: Axes, section: dict[str, Any] | None) -> None:
    title = "3. Commit → visible record (ms)"
    if _unavailable(ax, title, section):
        return
    assert section is not None
    loads = list(section["loads"])
    width = 0.25
    for offset, (key, color) in enumerate((("p50", BASE), ("p95", OTHER), ("p99", OURS))):
        values = [section["loads"][load][key] for load in loads]
        positions = [index + (offset - 1) * width for index in range(len(loads))]
        ax.bar(positions, values, width, label=key, color=color)
    ax.axhline(250, color=MISSED, linestyle="--", linewidth=1, label="p99 target (5k/s)")
    ax.set_xticks(range(len(loads)), [f"{int(load):,}/s" for load in loads])
    ax.set_xlabel("offered row changes / s")
    ax.set_ylabel("ms")
    ax.set_title(title)
    ax.legend(fontsize=7)


def _memory(ax: Axes, section: dict[str, Any] | None) -> None:
    title = "4. Daemon peak RSS (MB)"
    if _unavailable(ax, title, section):
        return
    assert section is not None
    cases = section["cases"]
    names = list(cases)
    labels = {"idle": "idle", "one_big_transaction": "1 big txn", "backlog": "backlog"}
    values = [cases[name]["peak_rss_mb"] for name in names]
    colors = [
        BASE if name == "idle" else (MET if value <= 200 else MISSED)
        for name, value in zip(names, values, strict=True)
    ]
    bars = ax.bar([labels.get(name, name) for name in names], values, color=colors)
    _label_bars(ax, bars, [f"{v:.0f}" for v in values])
    ax.axhline(200, color=OURS, linestyle="--", linewidth=1, label="target 200 MB")
    ax.set_ylabel("MB (VmHWM)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.margins(y=0.2)


def _queries(ax: Axes, section: dict[str, Any] | None) -> None:
    title = "5. Monitor queries, p99 (ms)"
    if _unavailable(ax, title, section):
        return
    assert section is not None
    names = list(section["queries"])
    values = [section["queries"][name]["latency_ms"]["p99"] for name in names]
    colors = [MET if v <= 20 else MISSED for v in values]
    bars = ax.barh([name.replace("_", " ") for name in names], values, color=colors)
    for bar, value in zip(bars, values, strict=True):
        ax.annotate(
            f"{value:,.1f}",
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            va="center",
            fontsize=8,
            xytext=(2, 0),
            textcoords="offset points",
        )
    ax.axvline(20, color=OURS, linestyle="--", linewidth=1, label="target 20 ms")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("ms (log scale)")
    ax.set_title(title)
    ax.legend(fontsize=7)


def _profile(ax: Axes, section: dict[str, Any] | None) -> None:
    title = "Profile: µs per change by stage"
    if _unavailable(ax, title, section):
        return
    assert section is not None
    stages = [stage for stage in section["stages"] if stage["us_per_change"] >= 0.05]
    labels = [f"{stage['stage']} ({stage['thread']})" for stage in stages]
    values = [stage["us_per_change"] for stage in stages]
    ax.barh(labels, values, color=OURS)
    ax.invert_yaxis()
    ax.set_xlabel("µs per row change")
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=7)


def render_chart(results: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    _write(axes[0][0], results.get("write"))
    _drain(axes[0][1], results.get("drain"))
    _latency(axes[0][2], results.get("latency"))
    _memory(axes[1][0], results.get("memory"))
    _queries(axes[1][1], results.get("queries"))
    _profile(axes[1][2], results.get("profile"))
    machine = results.get("machine", {})
    figure.suptitle(
        f"activity-cdc benchmarks ({results.get('preset')}, {results.get('started_at', '')[:10]}): "
        f"{machine.get('cores')} cores, {machine.get('memory_gib')} GiB, "
        f"PostgreSQL {machine.get('postgresql')}, Python {machine.get('python')}",
        fontsize=12,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
