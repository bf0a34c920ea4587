// Sign in: the token goes once to POST /api/session, which answers with an HttpOnly session
// cookie; the token itself is not kept by the page.
"use strict";
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  const token = document.getElementById("token").value.trim();
  const response = await fetch("/api/session", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token}),
    credentials: "same-origin",
  });
  if (response.ok) {
    const next = new URLSearchParams(location.search).get("next") || "/monitor";
    // only a path of this site: never an open redirect
    location.assign(next.startsWith("/") && !next.startsWith("//") ? next : "/monitor");
  } else {
    const body = await response.json().catch(() => ({}));
    error.textContent = body.error || `sign-in failed (${response.status})`;
  }
});
