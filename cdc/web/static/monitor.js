// The activity monitor: a virtual-scrolled list of records, newest first, keyset-paged from
// GET /api/activity; filters and search in the URL; live mode from GET /api/live (server-sent
// events that start where the first page ended: no record twice, none missed); a record's
// detail (GET /api/record) with its changes as a diff, its transaction and its context; an
// entity's history (GET /api/entities/.../history). Every value is set as text.
"use strict";

const FILTERS = ["search", "since", "until", "severity", "min_severity", "operation", "source",
  "category", "table", "entity_type", "entity_id", "actor", "action"];
const ROW_HEIGHT = 28;  // px; the list draws only the rows in view (and a few around)
const PAGE = 200;
const OVERSCAN = 10;
const HELD_ROWS = 200000;  // rows held by the page at most (~60 MB): past that, narrow the filter
const LIVE_RETRY_MAX_S = 30;  // a paused live mode tries again after 2 s, 4 s, ... up to this

const state = {
  rows: [],          // compact rows (no old/new/changes): the list holds many
  next: null,        // cursor of the next (older) page
  liveFrom: null,    // position where the live stream starts
  loading: false,
  generation: 0,     // bumps on every new filter: late answers of an old one are dropped
  source: null,      // the EventSource of live mode
  liveTimer: 0,      // a paused live mode's next try
  liveTries: 0,      // refused tries in a row: the wait grows with them
  selected: null,    // position of the record shown in the detail pane
  fresh: new Set(),  // positions that arrived live (highlighted)
};

const $ = (id) => document.getElementById(id);
const form = $("filters");
const list = $("list");
const spacer = $("spacer");

function filtersFromUrl() {
  const url = new URLSearchParams(location.search);
  for (const name of FILTERS) form.elements[name].value = url.get(name) || "";
  $("live").checked = url.get("live") === "1";
  state.selected = url.get("record");
}

function currentFilters() {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  return params;
}

function writeUrl() {
  const params = currentFilters();
  if ($("live").checked) params.set("live", "1");
  if (state.selected) params.set("record", state.selected);
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
  for (const format of ["csv", "jsonl"]) {
    const exportParams = currentFilters();
    exportParams.set("format", format);
    $(`export-${format}`).href = `/api/activity/export?${exportParams}`;
  }
  $("to-dashboard").href = "/dashboard";
}

function compact(record) {
  return {
    position: record.position,
    cursor: record.cursor,
    occurred_at: record.occurred_at,
    severity: record.severity,
    operation: record.operation,
    entity: [record.entity_type, record.entity_id].filter((v) => v !== null).join(" "),
    actor: record.actor_id,
    summary: record.summary || record.action,
  };
}

function status(text, isError) {
  $("status").textContent = text;
  $("status").classList.toggle("error", Boolean(isError));
}

function describeCount() {
  const more = state.next ? ", older ones load as you scroll" : "";
  const live = state.source ? " · live: new records appear at the top" : "";
  status(`${cdc.number(state.rows.length)} records${more}${live}`);
}

async function reload() {
  const generation = ++state.generation;
  stopLive();
  state.rows = [];
  state.next = null;
  state.liveFrom = null;
  state.fresh.clear();
  list.scrollTop = 0;
  render();
  writeUrl();
  status("loading…");
  try {
    const page = await cdc.api(`/api/activity?${currentFilters()}&limit=${PAGE}`);
    if (generation !== state.generation) return;
    state.rows = page.records.map(compact);
    state.next = page.next;
    state.liveFrom = page.live_from;
    render();
    describeCount();
    if ($("live").checked) startLive();
  } catch (error) {
    if (generation === state.generation) status(error.message, true);
  }
}

async function loadOlder() {
  if (state.loading || !state.next || state.rows.length >= HELD_ROWS) return;
  state.loading = true;
  const generation = state.generation;
  try {
    const params = currentFilters();
    params.set("after", state.next);
    params.set("limit", PAGE);
    const page = await cdc.api(`/api/activity?${params}`);
    if (generation !== state.generation) return;
    state.rows.push(...page.records.map(compact));
    state.next = page.next;
    render();
    describeCount();
  } catch (error) {
    status(error.message, true);
  } finally {
    state.loading = false;
  }
}

// -- the virtual list ------------------------------------------------------------------------

function render() {
  spacer.style.height = `${state.rows.length * ROW_HEIGHT}px`;
  const first = Math.max(0, Math.floor(list.scrollTop / ROW_HEIGHT) - OVERSCAN);
  const shown = Math.ceil(list.clientHeight / ROW_HEIGHT) + 2 * OVERSCAN;
  const last = Math.min(state.rows.length, first + shown);
  const nodes = [];
  for (let i = first; i < last; i++) nodes.push(rowNode(state.rows[i], i));
  spacer.replaceChildren(...nodes);
  if (last >= state.rows.length - OVERSCAN) loadOlder();
}

function rowNode(row, index) {
  const classes = ["row", "record", `sev-${row.severity}`];
  if (row.position === state.selected) classes.push("selected");
  if (state.fresh.has(row.position)) classes.push("fresh");
  const node = cdc.el("div", {
    class: classes.join(" "),
    role: "row",
    "data-position": row.position,
    onclick: () => select(row.position),
  },
  cdc.el("span", {class: "c-time"}, cdc.when(row.occurred_at)),
  cdc.el("span", {class: "c-sev"}, cdc.el("span", {class: `badge sev-${row.severity}`}, row.severity)),
  cdc.el("span", {class: "c-op"}, row.operation),
  cdc.el("span", {class: "c-entity", title: row.entity}, row.entity),
  cdc.el("span", {class: "c-actor", title: row.actor || ""}, row.actor || "–"),
  cdc.el("span", {class: "c-summary", title: row.summary}, row.summary));
  node.style.top = `${index * ROW_HEIGHT}px`;
  return node;
}

let frame = 0;
list.addEventListener("scroll", () => {
  if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); });
});
window.addEventListener("resize", () => render());

// -- live mode -------------------------------------------------------------------------------

function startLive() {
  stopLive();
  const params = currentFilters();
  if (state.liveFrom) params.set("from", state.liveFrom);
  const source = new EventSource(`/api/live?${params}`, {withCredentials: true});
  source.addEventListener("records", (event) => {
    const records = JSON.parse(event.data);  // oldest first
    const added = records.map(compact).reverse();
    for (const row of added) state.fresh.add(row.position);
    const keep = list.scrollTop > 0;  // reading older rows: keep them where they are
    state.rows.unshift(...added);
    state.liveFrom = event.lastEventId || state.liveFrom;
    if (keep) list.scrollTop += added.length * ROW_HEIGHT;
    render();
    describeCount();
  });
  source.addEventListener("failure", (event) => status(JSON.parse(event.data), true));
  source.onopen = () => {
    state.liveTries = 0;
    describeCount();
  };
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) return;  // reconnecting by itself
    stopLive();  // refused: signed out (401), or a 503 (the database, too many live views)
    pauseLive();
  };
  state.source = source;
  describeCount();
}

// A live view refused. Signed out: the API call sends the page to sign-in. Otherwise (the
// store restarting or failing over, too many live views open) live mode stays on and tries
// again, waiting longer each time; it resumes where it stopped (state.liveFrom).
async function pauseLive() {
  try {
    await cdc.api("/api/openapi.json");  // needs the session, not the database
  } catch (error) {
    if (error.message === "signed out") return;
  }
  if (!$("live").checked || state.source || state.liveTimer) return;
  const wait = Math.min(2 * 2 ** state.liveTries, LIVE_RETRY_MAX_S);
  state.liveTries += 1;
  status(`live paused: the server cannot open a live view now (its database not answering, ` +
    `or too many live views open); trying again in ${wait} s`, true);
  state.liveTimer = setTimeout(() => {
    state.liveTimer = 0;
    if ($("live").checked && !state.source) startLive();
  }, wait * 1000);
}

function stopLive() {
  if (state.source) state.source.close();
  state.source = null;
  clearTimeout(state.liveTimer);
  state.liveTimer = 0;
}

$("live").addEventListener("change", () => {
  writeUrl();
  if ($("live").checked) {
    // live follows the newest records: start from a fresh first page
    reload();
  } else {
    stopLive();
    describeCount();
  }
});

// -- the detail pane -------------------------------------------------------------------------

async function select(position) {
  state.selected = position;
  writeUrl();
  render();
  const [lsn, seq] = position.split(",");
  const pane = $("detail");
  pane.replaceChildren(cdc.el("p", {class: "hint"}, "loading…"));
  try {
    const detail = await cdc.api(`/api/record?lsn=${encodeURIComponent(lsn)}&seq=${seq}`);
    if (state.selected !== position) return;
    pane.replaceChildren(...detailNodes(detail));
  } catch (error) {
    pane.replaceChildren(cdc.el("p", {class: "error"}, error.message));
  }
}

function field(name, value, extra) {
  return cdc.el("tr", {}, cdc.el("th", {}, name),
    cdc.el("td", {}, value === null || value === undefined || value === "" ? "–" : String(value), extra));
}

function detailNodes(detail) {
  const r = detail.record;
  const nodes = [
    cdc.el("h2", {class: "summary"}, r.summary || r.action),
    cdc.el("table", {class: "fields"},
      field("occurred", `${cdc.when(r.occurred_at)} UTC`),
      field("recorded", `${cdc.when(r.recorded_at)} UTC`),
      field("action", r.action),
      field("severity", r.severity),
      field("category", r.category),
      field("source", r.source),
      field("operation", r.operation),
      field("table", r.table),
      field("entity", [r.entity_type, r.entity_id].filter((v) => v !== null).join(" "),
        r.table && r.entity_id !== null
          ? cdc.el("button", {type: "button", class: "link", id: "open-history",
              onclick: () => showHistory(r)}, "history")
          : null),
      field("actor", r.actor_id,
        r.actor_id ? cdc.el("button", {type: "button", class: "link",
          onclick: () => filterBy({actor: r.actor_id})}, "all by this actor") : null),
      field("transaction", `xid ${r.xid ?? "–"} · commit ${r.commit_lsn} · #${r.seq}`)),
  ];
  nodes.push(cdc.el("h3", {}, "Changes"), changesNode(r));
  nodes.push(cdc.el("h3", {}, "Context"), contextNode(r.context));
  const others = detail.transaction.filter((t) => t.position !== r.position);
  nodes.push(cdc.el("h3", {}, `Its transaction (${detail.transaction.length}` +
    `${detail.transaction_truncated ? "+" : ""} records)`));
  nodes.push(others.length
    ? cdc.el("ul", {class: "transaction"}, ...others.map((t) => cdc.el("li", {},
        cdc.el("button", {type: "button", class: "link", onclick: () => select(t.position)},
          `#${t.seq} ${t.summary || t.action}`))))
    : cdc.el("p", {class: "hint"}, "no other record"));
  nodes.push(cdc.el("div", {id: "history"}));
  return nodes;
}

function changesNode(r) {
  const table = cdc.el("table", {class: "diff"},
    cdc.el("tr", {}, cdc.el("th", {}, "column"), cdc.el("th", {}, "old"), cdc.el("th", {}, "new")));
  const add = (column, old, next, kind) => table.append(cdc.el("tr", {class: kind},
    cdc.el("td", {class: "col"}, column),
    cdc.el("td", {class: "old"}, old === undefined ? "" : cdc.json(old)),
    cdc.el("td", {class: "new"}, next === undefined ? "" : cdc.json(next))));
  if (r.operation === "update" && r.changes && typeof r.changes === "object") {
    for (const [column, change] of Object.entries(r.changes)) add(column, change.old, change.new, "changed");
    const unchanged = Object.keys(r.new || {}).filter((c) => !(c in r.changes));
    for (const column of unchanged) add(column, r.old ? r.old[column] : undefined, r.new[column], "same");
  } else if (r.new && typeof r.new === "object") {
    for (const [column, value] of Object.entries(r.new)) add(column, undefined, value, "added");
  } else if (r.old && typeof r.old === "object") {
    for (const [column, value] of Object.entries(r.old)) add(column, value, undefined, "removed");
  } else {
    return cdc.el("p", {class: "hint"}, "no row values (an application activity or a truncate)");
  }
  return table;
}

function contextNode(context) {
  if (!context || (typeof context === "object" && !Object.keys(context).length)) {
    return cdc.el("p", {class: "hint"}, "none");
  }
  return cdc.el("pre", {class: "json"}, JSON.stringify(context, null, 2));
}

async function showHistory(r) {
  const box = $("history");
  box.replaceChildren(cdc.el("h3", {}, `History of ${r.table} ${r.entity_id}`),
    cdc.el("p", {class: "hint"}, "loading…"));
  try {
    const path = `/api/entities/${encodeURIComponent(r.table)}/${encodeURIComponent(r.entity_id)}` +
      `/history?entity_type=${encodeURIComponent(r.entity_type || "")}`;
    const result = await cdc.api(r.entity_type ? path : path.split("?")[0]);
    const items = result.records.map((h) => {
      const lines = [];
      if (h.operation === "update" && h.changes) {
        for (const [column, change] of Object.entries(h.changes)) {
          lines.push(cdc.el("div", {class: "change"}, cdc.el("span", {class: "col"}, column), ": ",
            cdc.el("span", {class: "old"}, cdc.json(change.old)), " → ",
            cdc.el("span", {class: "new"}, cdc.json(change.new))));
        }
      }
      return cdc.el("li", {class: h.position === r.position ? "current" : ""},
        cdc.el("button", {type: "button", class: "link", onclick: () => select(h.position)},
          `${cdc.when(h.occurred_at)} · ${h.operation} · ${h.summary || h.action}`), ...lines);
    });
    box.replaceChildren(cdc.el("h3", {}, `History of ${r.table} ${r.entity_id} (${items.length})`),
      cdc.el("ol", {class: "history"}, ...items));
    box.scrollIntoView({block: "nearest"});
  } catch (error) {
    box.replaceChildren(cdc.el("p", {class: "error"}, error.message));
  }
}

function filterBy(values) {
  for (const name of FILTERS) form.elements[name].value = values[name] || "";
  reload();
}

// -- wiring ----------------------------------------------------------------------------------

form.addEventListener("submit", (event) => { event.preventDefault(); reload(); });
$("clear").addEventListener("click", () => filterBy({}));
window.addEventListener("popstate", () => { filtersFromUrl(); reload(); });

filtersFromUrl();
reload().then(() => { if (state.selected) select(state.selected); });
