"""results.json → results.md: the targets first, then one table per part."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Section = dict[str, Any]


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(results: dict[str, Any], *, chart_name: str) -> str:
    lines = ["# activity-cdc benchmark results", ""]
    lines += _header(results)
    lines += [f"![benchmark chart]({chart_name})", ""]
    lines += _targets(results)
    renderers: dict[str, tuple[str, Callable[[Section], list[str]]]] = {
        "write": ("1. Write path: TPS and latency per mode", _write),
        "drain": ("2. Drain throughput", _drain),
        "latency": ("3. Commit-to-record latency", _latency),
        "memory": ("4. Daemon memory", _memory),
        "queries": ("5. Monitor queries", _queries),
        "web": ("6. Web API (cdc serve)", _web),
        "profile": ("Profile: where `cdc run --drain` spends its time", _profile),
        "jetstream": ("7. NATS JetStream: drain into a stream, ingest into a store", _jetstream),
    }
    for part, (title, render) in renderers.items():
        section = results.get(part)
        if section is None:
            continue
        lines += [f"## {title}", ""]
        if section.get("status") != "ok":
            lines += [f"**Failed**: `{section.get('error')}`", ""]
            continue
        lines += render(section)
    return "\n".join(lines)


def _header(results: dict[str, Any]) -> list[str]:
    machine = results.get("machine", {})
    dirty = machine.get("git_uncommitted_files") or 0
    return [
        f"Run {results.get('started_at', '?')} → {results.get('finished_at', 'unfinished')} "
        f"({_num(results.get('duration_s'))} s), preset **{results.get('preset')}**.",
        "",
        f"Machine: {machine.get('cores')} cores ({machine.get('cpu_model')}), "
        f"{machine.get('memory_gib')} GiB, kernel {machine.get('kernel')}; "
        f"PostgreSQL {machine.get('postgresql')} (fsync on, one throwaway cluster), "
        f"Python {machine.get('python')}, psycopg {machine.get('psycopg')}; "
        f"code at {machine.get('git_commit')}"
        + (f" with {dirty} uncommitted file(s)" if dirty else "")
        + f". Load average at start {machine.get('load_average_at_start')}, "
        f"at end {machine.get('load_average_at_end')}.",
        "",
    ]


def _targets(results: dict[str, Any]) -> list[str]:
    rows = []
    for part in ("write", "drain", "latency", "memory", "queries", "web", "jetstream"):
        section = results.get(part) or {}
        for item in section.get("targets", []):
            unit = "" if item["unit"] == "ratio" else f" {item['unit']}"
            shown = _num(item["value"], 2 if item["unit"] == "ratio" else 1)
            rows.append(
                [
                    item["name"],
                    f"{shown}{unit}",
                    f"{item['op']} {item['threshold']:g}{unit}",
                    "met" if item["met"] else "**missed**",
                ]
            )
    if not rows:
        return []
    return ["## Targets", "", *_table(["promise", "measured", "target", "verdict"], rows)]


# the write path's modes, in report order (results made before cdc_apart or recvlogical
# existed lack them)
WRITE_MODES = ("none", "triggers", "cdc", "cdc_apart", "recvlogical")


def _write(section: Section) -> list[str]:
    modes = section["modes"]
    ratios = section["ratios_to_none"]
    rows = []
    for mode in [m for m in WRITE_MODES if m in modes]:
        data = modes[mode]
        rows.append(
            [
                mode,
                _num(data["tps"], 1),
                _num(ratios.get(mode, 1.0), 3),
                _num(data.get("mean_ms"), 2),
                _num(data["p50_ms"], 2),
                _num(data.get("p95_ms"), 2),
                _num(data["p99_ms"], 2),
                _num(data["changes_per_txn"], 2),
                _num(data["wal_bytes_per_txn"]),
            ]
        )
    workload = section["workload"]
    cdc = modes["cdc"]
    return [
        f"{len(workload['scripts'])} platform transactions (bench/pgbench/), "
        f"{workload['clients']} clients, {workload['seconds_per_run']:g} s per run, "
        f"{workload['rounds']} interleaved round(s); medians, ratios per round to no auditing."
        + (
            f" Every mode offered {workload['rate_tps']:g} transactions/s (pgbench --rate): "
            "compare latency and CPU, not TPS."
            if workload.get("rate_tps")
            else ""
        ),
        "",
        *_table(
            [
                "mode",
                "TPS",
                "x none",
                "mean ms",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "changes/txn",
                "WAL B/txn",
            ],
            rows,
        ),
        f"CDC daemon during its runs: {_num(cdc.get('daemon_cpu_share'), 2)} of a core; "
        f"{_num(cdc.get('daemon_lag_bytes_at_end'))} bytes behind when the workload stopped, "
        f"caught up {_num(cdc.get('daemon_catch_up_s'), 2)} s later; "
        f"{_num(cdc.get('records_per_sink_transaction'), 1)} records per sink transaction.",
        "",
        *_database_cpu(section),
    ]


def _database_cpu(section: Section) -> list[str]:
    """Server CPU per audited row change (absent from results made before it was measured)."""
    cpu = section.get("database_cpu_per_change")
    if not cpu:
        return []
    modes = section["modes"]
    cdc = modes["cdc"]
    rows = [
        [mode, _num(modes[mode].get("cluster_cpu_us_per_change"), 1)]
        for mode in WRITE_MODES
        if mode in modes
    ]
    apart = section.get("database_cpu_per_change_store_apart")
    apart_line = []
    if apart and "cdc_apart" in modes:
        cdc_apart = modes["cdc_apart"]
        apart_line = [
            f"The store in another database of the cluster (`cdc_apart`): walsender "
            f"{_num(cdc_apart.get('walsender_cpu_us_per_change'), 1)} + sink backend "
            f"{_num(cdc_apart.get('sink_backend_cpu_us_per_change'), 1)} = "
            f"{_num(apart.get('cdc_walsender_sink_us'), 1)} µs/change, "
            f"x{_num(apart.get('ratio_cdc_to_triggers_added'), 2)} of the triggers' addition; "
            f"TPS ratio {_num(section['ratios_to_none'].get('cdc_apart'), 3)}; daemon "
            f"{_num(cdc_apart.get('daemon_cpu_us_per_change'), 1)} µs/change.",
            "",
        ]
    floor_line = []
    if "walsender_floor_us" in cpu and "recvlogical" in modes:
        floor_line = [
            f"The floor (`recvlogical`: `pg_recvlogical` streams the same publication into "
            f"/dev/null): its walsender costs {_num(cpu.get('walsender_floor_us'), 1)} "
            f"µs/change, x{_num(cpu.get('ratio_walsender_floor_to_triggers_added'), 2)} of "
            f"the triggers' addition, before any consumer writes anything; co-located TPS "
            f"ratio {_num(section['ratios_to_none'].get('recvlogical'), 3)}.",
            "",
        ]
    return [
        "Server CPU per row change (the whole PostgreSQL cluster from /proc, pgbench's run):",
        "",
        *_table(["mode", "cluster CPU µs/change"], rows),
        f"Triggers add {_num(cpu.get('triggers_added_us'), 1)} µs/change, CDC adds "
        f"{_num(cpu.get('cdc_added_us'), 1)}; CDC's own server processes: walsender "
        f"{_num(cdc.get('walsender_cpu_us_per_change'), 1)} + sink backend "
        f"{_num(cdc.get('sink_backend_cpu_us_per_change'), 1)} = "
        f"{_num(cpu.get('cdc_walsender_sink_us'), 1)} µs/change, "
        f"x{_num(cpu.get('ratio_cdc_to_triggers_added'), 2)} of the triggers' addition "
        f"(target <= 0.5), beside a co-located TPS ratio of "
        f"{_num(section['ratios_to_none'].get('cdc'), 3)}. Daemon: "
        f"{_num(cdc.get('daemon_cpu_us_per_change'), 1)} µs/change.",
        "",
        *apart_line,
        *floor_line,
    ]


def _drain(section: Section) -> list[str]:
    backlog = section["backlog"]
    rates = section["changes_per_s"]
    ratios = section["ratios_to_pg_recvlogical"]
    names = {
        "cdc": "`cdc run --drain` (decode, map, COPY, durable commit)",
        "pg_recvlogical": "`pg_recvlogical` → /dev/null",
        "python_peer": "psycopg2 + pypgoutput (receive + decode only)",
    }
    rows = [[names[name], _num(rates[name]), _num(ratios[name], 3)] for name in names]
    decoders = section["decoders"]
    decoder_rows = [
        [
            name,
            _num(decoders["changes_per_s"][name]),
            _num(decoders["us_per_change"][name], 2),
        ]
        for name in ("cdc", "pypgoutput")
    ]
    return [
        f"Backlog: {_num(backlog['row_changes'])} row changes in "
        f"{_num(backlog['transactions'])} transactions, {backlog['wal_mb']} MB of WAL "
        f"(median of {len(section['rounds'])} round(s)); each consumer drains a copy of the slot.",
        "",
        *_table(["consumer", "changes/s", "x pg_recvlogical"], rows),
        f"Decoders in-process on the same {_num(decoders['payloads'])} captured messages "
        f"({_num(decoders['row_changes'])} row changes; "
        f"{_num(decoders['inserts_compared_equal'])} inserts checked equal): "
        f"cdc.pgoutput is **{decoders['ratio_cdc_to_pypgoutput']:.2f}x** pypgoutput.",
        "",
        *_table(["decoder", "changes/s", "µs/change"], decoder_rows),
    ]


def _jetstream(section: Section) -> list[str]:
    rates = section["changes_per_s"]
    ratios = section["ratios_to_postgres_sink"]
    names = {
        "cdc_postgres": "`cdc run --drain`, PostgreSQL sink",
        "cdc_jetstream_r1": "`cdc run --drain`, JetStream sink, 1 replica",
        "cdc_jetstream_r3": "`cdc run --drain`, JetStream sink, 3 replicas",
        "pg_recvlogical": "`pg_recvlogical` → /dev/null",
    }
    rows = [[names[name], _num(rates[name]), _num(ratios[name], 3)] for name in names]
    return [
        f"Backlog: {_num(section['backlog']['row_changes'])} row changes (median of "
        f"{len(section['rounds'])} round(s)); each consumer drains a copy of the slot; a "
        "3-node NATS cluster on the same machine.",
        "",
        *_table(["consumer", "changes/s", "x PostgreSQL sink"], rows),
        f"`cdc ingest --drain` from the 3-replica stream into a fresh store: "
        f"{_num(section['ingest_records_per_s'])} records/s.",
        "",
    ]


def _latency(section: Section) -> list[str]:
    method = section["method"]
    rows = [
        [
            _num(int(load)),
            _num(data["achieved_changes_per_s"]),
            _num(data["p50"], 0),
            _num(data["p95"], 0),
            _num(data["p99"], 0),
            _num(data["recorded_at_p99_ms"], 0),
            _num(data["source_txn_p99_ms"], 0) if "source_txn_p99_ms" in data else "-",
        ]
        for load, data in section["loads"].items()
    ]
    return [
        f"Visible = a poller ({method['poll_interval_ms']:g} ms) sees the record; "
        "latency = its `statement_timestamp()` - the record's `occurred_at` (source commit "
        "time), same server clock. `recorded_at` - `occurred_at` (sink transaction start) for "
        f"comparison. {method['changes_per_txn']} changes per transaction, "
        f"{method['clients']} clients, {method['seconds_per_run']:g} s per load. The source "
        "transactions' own p99 (pgbench, their commit's WAL flush included): a commit time "
        "is taken before that flush, so a slow flush delays every record committed then.",
        "",
        *_table(
            [
                "offered changes/s",
                "achieved",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "p99 recorded_at ms",
                "source txn p99 ms",
            ],
            rows,
        ),
    ]


def _memory(section: Section) -> list[str]:
    labels = {
        "idle": "nothing to drain (the floor)",
        "one_big_transaction": "one big transaction",
        "backlog": "backlog of the platform workload",
    }
    rows = [
        [
            labels.get(name, name),
            _num(case["row_changes"]),
            _num(case["wal_mb"], 1),
            _num(case["peak_rss_mb"], 1),
            _num(case["cpu_s"], 1),
            _num(case["wall_s"], 1),
        ]
        for name, case in section["cases"].items()
    ]
    return _table(
        ["`cdc run --drain` on", "row changes", "WAL MB", "peak RSS MB", "CPU s", "wall s"],
        rows,
    )


def _queries(section: Section) -> list[str]:
    store = section["store"]
    fill = section["fill"]
    rows = [
        [
            name,
            _num(data["latency_ms"]["p50"], 2),
            _num(data["latency_ms"]["p99"], 2),
            "yes" if data["plan"].get("full_sort") else "no",
            _index_kinds(data["plan"]["indexes"]),
        ]
        for name, data in section["queries"].items()
    ]
    indexes = "; ".join(f"`{index['definition']}`" for index in store["indexes"])
    layout = (
        f"partitioned ({len(store.get('partitions', []))} partitions)"
        if store["partitioned"]
        else "not partitioned"
    )
    return [
        f"{_num(fill['records'])} records over {fill['window_days']} days "
        f"({_num(fill['total_mb'])} MB with indexes), {layout}. "
        f"Indexes at the time: {indexes}.",
        "",
        *_table(["query", "p50 ms", "p99 ms", "full Sort in plan", "indexes used"], rows),
    ]


def _index_kinds(names: list[str]) -> str:
    """Partition indexes by the parent index they belong to: "records_2026_11_occurred_at_idx"
    and its siblings → "occurred_at_idx (6 partitions)"."""
    kinds: dict[str, int] = {}
    for name in names:
        parts = name.split("_")
        # records_YYYY_MM_<rest> or records_default_<rest>
        if len(parts) > 3 and parts[1].isdigit() and parts[2].isdigit():
            rest = "_".join(parts[3:])
        elif len(parts) > 2 and parts[1] == "default":
            rest = "_".join(parts[2:])
        else:
            rest = name
        kinds[rest] = kinds.get(rest, 0) + 1
    return ", ".join(f"{kind} ({count})" for kind, count in kinds.items()) or "-"


def _profile(section: Section) -> list[str]:
    rows = [
        [
            stage["stage"],
            stage["thread"],
            _num(stage["us_per_change"], 2),
            _num(stage["share"] * 100, 1) + " %",
        ]
        for stage in section["stages"]
    ]
    server = section.get("server_cpu_us_per_change", {})
    cost = section.get("store_write_cost", {})
    cost_rows = [[name, _num(value, 1)] for name, value in cost.get("us_per_record", {}).items()]
    return [
        f"{section['sampler']} at {section['rate_hz']} Hz on `cdc run --drain` of "
        f"{_num(section['row_changes'])} changes ({_num(section['changes_per_s'])} changes/s "
        f"under the profiler); wall {_num(section['wall_s'], 1)} s, CPU "
        f"{_num(section['cpu_s'], 1)} s.",
        "",
        *_table(["stage", "thread", "µs per change", "share of thread"], rows),
        "Server CPU per change while it drained: "
        + ", ".join(f"{role} {_num(value, 1)} µs" for role, value in server.items())
        + ".",
        "",
        f"Writing the same {_num(cost.get('rows'))} records again, "
        f"{_num(cost.get('batch_rows'))} per committed transaction, into copies of the store:",
        "",
        *_table(["store variant", "µs per record"], cost_rows),
        *_chain_cost(section.get("chain_cost") or {}),
    ]


def _chain_cost(chain: dict[str, Any]) -> list[str]:
    """The tamper-evidence hash chain: the same records through the daemon's sink, on and off."""
    if not chain.get("rows"):
        return []
    return [
        f"The hash chain (tamper evidence): the same {_num(chain['rows'])} records through the "
        f"daemon's sink (`cdc.pipeline.sink.Sink`: COPY, rollups, checkpoint, durable commit), "
        f"{_num(chain['batch_rows'])} per transaction, {chain['rounds']} interleaved rounds:",
        "",
        *_table(
            ["sink", "µs per record"],
            [
                [
                    "hash_chain = false (COPY into the records)",
                    _num(chain["us_per_record_without_chain"], 1),
                ],
                [
                    "hash_chain = true (staging, chained INSERT ... SELECT)",
                    _num(chain["us_per_record_with_chain"], 1),
                ],
                ["cost of the chain", _num(chain["chain_us_per_record"], 1)],
                ["ratio on / off (median of rounds)", _num(chain["ratio_with_to_without"], 2)],
            ],
        ),
    ]


def _web(section: Section) -> list[str]:
    fill = section["fill"]
    rows = [
        [name, _num(data["p50"], 1), _num(data["p99"], 1)]
        for name, data in section["pages_ms"].items()
    ]
    dashboard = section["dashboard_ms"]
    rows += [
        [f"dashboard: {name}", _num(data["p50"], 1), _num(data["p99"], 1)]
        for name, data in dashboard.items()
    ]
    live = section["live"]
    export = section["export"]
    return [
        f"{_num(fill['records'])} records over {fill['window_days']} days, "
        f"{_num(fill['rollup_rows'])} rollup rows; `cdc serve` as a subprocess, httpx client. "
        "First page (100 records) per filter, and the dashboard's two requests for 30 days:",
        "",
        *_table(["request", "p50 ms", "p99 ms"], rows),
        f"Live: {_num(live['written'])} records written at {_num(live['offered_records_per_s'])}/s "
        f"for {_num(live['seconds'])} s, {_num(live['arrived'])} arrived on the open stream; "
        f"delay from commit p50 {_num(live['delay_s']['p50'], 3)} s, "
        f"p99 {_num(live['delay_s']['p99'], 3)} s.",
        "",
        f"Export: {_num(export['rows'])} JSONL rows ({_num(export['mb'])} MB) in "
        f"{_num(export['seconds'], 1)} s = {_num(export['rows_per_s'])} rows/s; server RSS "
        f"{_num(export['server_rss_mib_before'], 1)} MiB before, "
        f"{_num(export['server_rss_mib_peak_during'], 1)} MiB at most during.",
        "",
    ]
