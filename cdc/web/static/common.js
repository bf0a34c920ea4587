// Shared by the pages: fetching the API (a 401 sends the page to sign-in), building elements
// with text only (record values are never parsed as HTML), and formatting.
"use strict";

const cdc = (() => {
  async function api(path) {
    const response = await fetch(path, {credentials: "same-origin"});
    if (response.status === 401) {
      location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
      throw new Error("signed out");
    }
    const body = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }

  // el("td", {class: "x", title: "..."}, "text", child, ...): children are text or nodes
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.` +
      `${pad(d.getUTCMilliseconds(), 3)}`;
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "never";
    if (seconds < 60) return `${seconds.toFixed(1)} s ago`;
    if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min ago`;
    if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h ago`;
    return `${(seconds / 86400).toFixed(1)} d ago`;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }

  function number(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
  }

  function json(value) {
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  async function signOut() {
    await fetch("/api/session", {method: "DELETE", credentials: "same-origin"});
    location.assign("/login");
  }

  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("sign-out");
    if (button) button.addEventListener("click", signOut);
  });

  return {api, el, when, ago, bytes, number, json};
})();
