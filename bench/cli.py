"""``python -m bench``: every benchmark (or the named ones) on a throwaway PostgreSQL, then the
JSON results, a markdown table and a PNG chart generated from that JSON.

    python -m bench                      # everything, full sizes (the published numbers)
    python -m bench --quick              # everything, small sizes (CI smoke run, < 3 min)
    python -m bench drain latency        # only these parts
    python -m bench --drain-changes 200000 --rounds 1 drain
    python -m bench report [--out DIR]   # regenerate results.md and results.png from JSON
    python -m bench --compare REF [--quick] [drain|write]   # REF's daemon vs this checkout's

Parts: write, drain, latency, memory, queries, web, profile, jetstream. Results go to --out (default
bench/results): results.json, results.md, results.png and logs/. With --compare (bench/compare.py):
compare.json, and the ratios head ÷ REF on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.code_tree import is_commit
from bench.context import BenchContext, log
from bench.machine import machine_facts
from bench.platform_db import SeedCounts, build_template
from bench.results import RESULTS_JSON, write_reports, write_results
from bench.server import BenchServer
from bench.sizes import COMPARE_PRESETS, PRESETS, Sizes, parse_size, size_fields

DEFAULT_OUT = Path(__file__).parent / "results"


def _sections() -> dict[str, Callable[[BenchContext], dict[str, Any]]]:
    from bench.sections import drain, jetstream, latency, memory, profile, queries, web, write_path

    return {
        "jetstream": jetstream.run,
        "write": write_path.run,
        "drain": drain.run,
        "latency": latency.run,
        "memory": memory.run,
        "queries": queries.run,
        "web": web.run,
        "profile": profile.run,
    }


PARTS = ("write", "drain", "latency", "memory", "queries", "web", "profile", "jetstream")
COMPARE_PARTS = ("drain", "write")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="activity-cdc benchmarks, side by side with their baselines, in one run.",
    )
    parser.add_argument(
        "parts",
        nargs="*",
        metavar="PART",
        help=f"which parts to run: {', '.join(PARTS)} (default: all); or 'report'",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument(
        "--compare",
        metavar="REF",
        help="run REF's daemon and this checkout's side by side, interleaved, and print their "
        f"ratios (parts: {', '.join(COMPARE_PARTS)}; default both)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--locale",
        default="C",
        help="the throwaway cluster's locale (initdb --locale): C (default, text compared with "
        "memcmp) or the host's, as production databases usually are, e.g. C.UTF-8",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    sizes = parser.add_argument_group("sizes (override the preset)")
    for field_ in size_fields():
        sizes.add_argument(
            "--" + field_.name.replace("_", "-"),
            dest=f"size_{field_.name}",
            metavar="N",
            help=f"{field_.metadata['help']} (full: {_shown(field_.default)})",
        )
    return parser


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    out: Path = args.out
    if not _known_locale(args.locale):
        print(
            f"--locale {args.locale}: this machine has no such locale (`locale -a` lists them; "
            "C.UTF-8 is the usual host locale)"
        )
        return 2
    if args.parts == ["report"]:
        write_reports(out)
        print(f"wrote {out / 'results.md'} and {out / 'results.png'} from {out / RESULTS_JSON}")
        return 0
    if args.compare:
        from bench import compare

        unknown = [part for part in args.parts if part not in COMPARE_PARTS]
        if unknown:
            print(f"unknown part(s): {', '.join(unknown)}; --compare runs {COMPARE_PARTS}")
            return 2
        if not is_commit(args.compare):
            print(
                f"--compare {args.compare}: not a commit of this repository; give a branch, "
                "a tag or a commit (git log --oneline)"
            )
            return 2
        sizes = _sizes(args, COMPARE_PRESETS)
        if sizes is None:
            return 2
        return compare.run(
            args.compare, sizes, out, parts=args.parts or list(COMPARE_PARTS), locale=args.locale
        )
    unknown = [part for part in args.parts if part not in PARTS]
    if unknown:
        print(f"unknown part(s): {', '.join(unknown)}; choose from {', '.join(PARTS)}")
        return 2
    parts = [part for part in PARTS if part in args.parts] if args.parts else list(PARTS)
    sizes = _sizes(args, PRESETS)
    if sizes is None:
        return 2
    return run(parts, sizes, out, preset="quick" if args.quick else "full", locale=args.locale)


def _known_locale(name: str) -> bool:
    """Whether the C library accepts ``name`` as a collation locale, as initdb will ask it."""
    import locale

    saved = locale.setlocale(locale.LC_COLLATE)
    try:
        locale.setlocale(locale.LC_COLLATE, name)
    except locale.Error:
        return False
    finally:
        locale.setlocale(locale.LC_COLLATE, saved)
    return True


def _sizes(args: argparse.Namespace, presets: dict[str, Sizes]) -> Sizes | None:
    """The preset with the size flags applied; None (said on one line) when a flag's value
    is not a number of its kind."""
    sizes = presets["quick" if args.quick else "full"]
    changes = {}
    for field_ in size_fields():
        text = getattr(args, f"size_{field_.name}")
        if text is not None:
            try:
                changes[field_.name] = parse_size(field_, text)
            except ValueError:
                kind = (
                    "comma-separated integers"
                    if isinstance(field_.default, tuple)
                    else ("a number" if isinstance(field_.default, float) else "an integer")
                )
                flag = "--" + field_.name.replace("_", "-")
                print(f"{flag} {text}: give {kind}, 0 or more (python -m bench --help)")
                return None
    return sizes.replace(**changes)


def run(parts: list[str], sizes: Sizes, out: Path, *, preset: str, locale: str = "C") -> int:
    """Run the parts on one throwaway server; write JSON after each, reports at the end."""
    out.mkdir(parents=True, exist_ok=True)
    logdir = out / "logs"
    logdir.mkdir(exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "schema": 1,
        "preset": preset if sizes == PRESETS.get(preset) else f"{preset} (modified)",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sizes": {name: value for name, value in vars(sizes).items()},
        "parts": parts,
    }
    failures = 0
    server = BenchServer(locale=locale)
    try:
        server.start()
        results["machine"] = machine_facts(server)
        results["postgresql_settings"] = server.settings()
        seed = SeedCounts.for_users(sizes.seed_users)
        results["seed"] = seed.as_params()
        log.info("seeding the platform template (%d users)", seed.users)
        build_template(server, seed)
        ctx = BenchContext(server=server, sizes=sizes, seed=seed, logdir=logdir)
        sections = _sections()
        for part in parts:
            log.info("=== %s ===", part)
            part_started = time.monotonic()
            try:
                results[part] = sections[part](ctx)
            except Exception as exc:  # one failed part must not lose the others
                failures += 1
                log.error("%s failed: %s", part, exc)
                results[part] = {
                    "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(limit=8),
                }
            results[part]["seconds"] = round(time.monotonic() - part_started, 1)
            write_results(out, results)
    finally:
        server.stop()
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["duration_s"] = round(time.monotonic() - started, 1)
    results.setdefault("machine", {})["load_average_at_end"] = [
        round(value, 2) for value in os.getloadavg()
    ]
    write_results(out, results)
    write_reports(out)
    print(json.dumps(_summary_lines(results), indent=1))
    print(f"results: {out / RESULTS_JSON}, {out / 'results.md'}, {out / 'results.png'}")
    return 1 if failures else 0


def _summary_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for part in PARTS:
        section = results.get(part)
        if not section:
            continue
        if section.get("status") != "ok":
            lines.append(f"{part}: FAILED ({section.get('error')})")
            continue
        for item in section.get("targets", []):
            verdict = "met" if item["met"] else "MISSED"
            lines.append(
                f"{item['name']}: {item['value']} {item['unit']} "
                f"(target {item['op']} {item['threshold']}) {verdict}"
            )
    return lines
