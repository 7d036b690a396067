// The Choreo console's script: live regions and the operator's actions. No dependencies.
"use strict";

const csrf = () => document.querySelector('meta[name="choreo-csrf"]')?.content ?? "";

function toast(text, bad = false) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.className = bad ? "show bad" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.className = ""; }, 4000);
}

// What a person set inside a live region (a ticked box, an opened message) survives its
// refresh: elements with data-keep="NAME" get their state back by name.
function keptState(region) {
  const kept = new Map();
  region.querySelectorAll("[data-keep]").forEach((el) => {
    kept.set(el.dataset.keep, el.tagName === "DETAILS" ? el.open : el.checked);
  });
  return kept;
}

function restoreState(region, kept) {
  region.querySelectorAll("[data-keep]").forEach((el) => {
    if (!kept.get(el.dataset.keep)) return;
    if (el.tagName === "DETAILS") el.open = true;
    else el.checked = true;
  });
}

// An element with data-live="URL" is fetched again every data-every ms and its content
// replaced; skipped while the tab is hidden or while focus is inside it (a person acting).
// A fragment holding [data-live-ended] (a saga that ended) is the last one fetched.
function live(region) {
  const every = Number(region.dataset.every || 3000);
  const badge = document.querySelector(".live");
  async function refresh() {
    if (document.hidden || region.contains(document.activeElement) && document.activeElement !== document.body) {
      return;
    }
    try {
      const response = await fetch(region.dataset.live, { credentials: "same-origin" });
      if (response.status === 401 || response.redirected && response.url.includes("/sign-in")) {
        window.location.assign("/console/sign-in?next=" + encodeURIComponent(location.pathname + location.search));
        return;
      }
      if (!response.ok) throw new Error(response.statusText);
      const kept = keptState(region);
      region.innerHTML = await response.text();
      restoreState(region, kept);
      region.dataset.updated = String(Date.now());
      badge?.classList.remove("stale");
      if (region.querySelector("[data-live-ended]")) {
        clearInterval(timer);
        delete region.dataset.live;
      }
    } catch (error) {
      badge?.classList.add("stale");
    }
  }
  region.refresh = refresh;
  const timer = setInterval(refresh, every);
}

// An answer to an order's approval (data-order="ID", the orders list) or to the human task
// any saga waits on (data-saga-type and data-saga-key: the approvals page, a saga's page).
async function act(button) {
  const { sagaType, sagaKey } = button.dataset;
  const target = sagaKey ?? button.dataset.order;
  const path = sagaKey
    ? `/sagas/${encodeURIComponent(sagaType)}/${encodeURIComponent(sagaKey)}`
    : `/orders/${encodeURIComponent(target)}`;
  const action = button.dataset.action;
  // A reason typed beside the buttons goes with the decision; a rejection without one asks.
  const typed = document.querySelector(`input[data-reason-for="${CSS.escape(target)}"]`)?.value.trim();
  let body = typed ? { reason: typed } : {};
  if (action === "reject" && !typed) {
    const reason = window.prompt(`Why reject ${target}?`);
    if (!reason) return;
    body = { reason };
  }
  button.disabled = true;
  const response = await fetch(`${path}/${action}`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Choreo-CSRF": csrf() },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (response.ok) {
    toast(`${target} ${answer.decision} by ${answer.by}`);
  } else {
    button.disabled = false;
    toast(answer.detail || `${action} failed (${response.status})`, true);
  }
  button.blur();
  document.querySelectorAll("[data-live]").forEach((r) => r.refresh?.());
}

// Redrive dead letters: one (data-redrive="ID") or the ticked ones (data-redrive-selected).
async function redrive(button) {
  const ids = button.dataset.redrive
    ? [button.dataset.redrive]
    : [...document.querySelectorAll("input[data-select]:checked")].map((box) => box.dataset.select);
  if (ids.length === 0) {
    toast("Tick the dead letters to redrive first.", true);
    return;
  }
  button.disabled = true;
  const response = await fetch("/dead-letters/redrive", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Choreo-CSRF": csrf() },
    body: JSON.stringify({ ids }),
  });
  const answer = await response.json().catch(() => ({}));
  if (response.ok) {
    toast(`redrove ${answer.ids.join(", ")} by ${answer.by}`);
  } else {
    toast(answer.detail || `redrive failed (${response.status})`, true);
  }
  button.disabled = false;
  button.blur();
  document.querySelectorAll("input[data-select]:checked").forEach((box) => { box.checked = false; });
  document.querySelectorAll("[data-live]").forEach((r) => r.refresh?.());
}

// Time travel on a saga's page: dragging the slider shows the instant (ISO, UTC) in the text
// field; letting go asks the server for the saga as it was then.
function timeTravel(slider) {
  const text = slider.form.querySelector("[data-as-of-text]");
  const show = () => { text.value = new Date(Number(slider.value)).toISOString(); };
  slider.addEventListener("input", show);
  slider.addEventListener("change", () => { show(); slider.form.requestSubmit(); });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(live);
  document.querySelectorAll("[data-as-of-slider]").forEach(timeTravel);
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) act(button);
    const redriving = event.target.closest("button[data-redrive], button[data-redrive-selected]");
    if (redriving) redrive(redriving);
  });
});
