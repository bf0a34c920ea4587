// The dashboard: counts by source, category, severity, operation and table over a window
// with the trend (GET /api/stats: from the rollups, never a scan of the records), and the
// pipeline's health (GET /api/health), refreshed every few seconds. The chart is uPlot,
// served from /static/vendor. Every value is set as text.
"use strict";

const REFRESH_MS = 5000;
const DIMENSIONS = ["source", "category", "severity", "operation", "table"];
const $ = (id) => document.getElementById(id);
let chart = null;

function windowFromUrl() {
  const since = new URLSearchParams(location.search).get("since");
  if (since && [...$("window").options].some((o) => o.value === since)) $("window").value = since;
}

function change(value) {
  if (value === null || value === undefined) return "new";
  return `${value >= 0 ? "+" : ""}${(value * 100).toFixed(1)}%`;
}

function card(title, value, note, level) {
  return cdc.el("div", {class: `card ${level || ""}`},
    cdc.el("div", {class: "card-title"}, title),
    cdc.el("div", {class: "card-value"}, value),
    cdc.el("div", {class: "card-note"}, note || ""));
}

function chainNote(h) {
  if (!h.chain_verified_at) return "never verified: run cdc verify-chain";
  const when = `${cdc.when(h.chain_verified_at).slice(0, 16)} UTC`;
  if (h.chain_intact) return `verified intact ${when} (${cdc.number(h.chain_checked)} records)`;
  return `BROKEN at the check of ${when}: ${h.chain_problem}`;
}

function renderHealth(h) {
  const slot = h.slot;
  const lagLevel = h.lag_bytes > 64 * 1024 * 1024 ? "bad" : h.lag_bytes > 1024 * 1024 ? "warn" : "";
  const ageLevel = h.last_commit_age_seconds === null ? "warn"
    : h.last_commit_age_seconds > 300 ? "warn" : "";
  $("health").replaceChildren(
    card("Lag", cdc.bytes(h.lag_bytes),
      slot ? `unconfirmed WAL; confirmed ${slot.confirmed_flush_lsn || "–"}` : "slot not visible from here",
      lagLevel),
    card("Last recorded commit", cdc.ago(h.last_commit_age_seconds),
      h.last_commit_at ? `${cdc.when(h.last_commit_at)} UTC · ${h.last_commit_lsn}` : "none yet", ageLevel),
    card("Acknowledged", h.acknowledged_lsn || "–", "end LSN of the last recorded commit"),
    card("Records / s", h.records_per_second.toFixed(1),
      `${cdc.number(h.records_last_hour)} in the last hour`),
    card("Dead letters", h.dead_letters === null ? "–" : cdc.number(h.dead_letters),
      h.dead_letters ? "changes the sink refused: see docs/operations.md" : "changes the sink refused",
      h.dead_letters ? "bad" : ""),
    card("Slot", slot ? (slot.active ? "active" : "inactive") : "–",
      slot ? `${slot.slot} · wal_status ${slot.wal_status || "–"} · retains ${cdc.bytes(slot.retained_bytes)}` : "",
      slot && !slot.active ? "warn" : ""),
    card("Hash chain", h.chain_position === null ? "off" : `#${cdc.number(h.chain_position)}`,
      chainNote(h), h.chain_intact === false ? "bad" : h.chain_verified_at ? "" : "warn"),
  );
}

function renderStats(s) {
  $("total").textContent = `${cdc.number(s.total)} records` + (s.change === null
    ? " (none in the window before)" : ` (${change(s.change)} on the window before)`);
  $("window-text").textContent =
    `${cdc.when(s.window.start).slice(0, 16)} – ${cdc.when(s.window.end).slice(0, 16)} UTC`;
  const xs = s.trend.map((p) => Date.parse(p.start) / 1000);
  const ys = s.trend.map((p) => p.n);
  const box = $("trend");
  const width = Math.max(300, box.clientWidth - 8);
  if (chart) chart.destroy();
  chart = new uPlot({
    width, height: 220,
    scales: {x: {time: true}},
    series: [{}, {label: "records", stroke: "#2563eb", fill: "rgba(37,99,235,0.12)", width: 2,
      paths: uPlot.paths.stepped({align: 1})}],
    axes: [{}, {size: 60}],
    legend: {show: true},
  }, [xs, ys], box);
  const sections = DIMENSIONS.filter((d) => s.breakdowns[d]).map((name) => {
    const counts = s.breakdowns[name];
    const peak = Math.max(1, ...counts.map((c) => c.n));
    const rows = counts.slice(0, 15).map((c) => {
      const bar = cdc.el("span", {class: "bar"});
      bar.style.width = `${(100 * c.n / peak).toFixed(1)}%`;
      return cdc.el("tr", {},
        cdc.el("td", {class: "value"}, monitorLink(name, c.value)),
        cdc.el("td", {class: "n"}, cdc.number(c.n)),
        cdc.el("td", {class: "bar-cell"}, bar),
        cdc.el("td", {class: "change"}, change(c.change)));
    });
    return cdc.el("div", {class: "panel"}, cdc.el("h3", {}, `By ${name}`),
      rows.length ? cdc.el("table", {class: "breakdown"}, ...rows)
        : cdc.el("p", {class: "hint"}, "nothing in this window"));
  });
  $("breakdowns").replaceChildren(...sections);
}

function monitorLink(name, value) {
  if (!value) return "(none)";
  const params = new URLSearchParams({[name === "table" ? "table" : name]: value,
    since: $("window").value});
  return cdc.el("a", {href: `/monitor?${params}`}, value);
}

async function refresh() {
  const since = $("window").value;
  try {
    const [stats, health] = await Promise.all([
      cdc.api(`/api/stats?since=${encodeURIComponent(since)}`),
      cdc.api("/api/health"),
    ]);
    renderStats(stats);
    renderHealth(health);
    $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("status").classList.remove("error");
  } catch (error) {
    $("status").textContent = error.message;
    $("status").classList.add("error");
  }
}

$("window").addEventListener("change", () => {
  history.replaceState(null, "", `?since=${encodeURIComponent($("window").value)}`);
  refresh();
});
windowFromUrl();
refresh();
setInterval(refresh, REFRESH_MS);
