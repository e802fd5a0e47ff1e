// The Alerts view (docs/alerts.md, docs/portal.md#alerts-a-falling-score-becomes-a-ticket): the score alerts
// (GET /api/alerts) with each tenant's episode in words (its `episodes`: open with its ticket, a ticket a person
// closed, a step that failed and what to do), and for admins New, Edit and Remove, each a PUT of the whole list with
// If-Match (the version read).
// A 412 says someone else changed the list and offers to reload it; a refusal shows under the form's fields.
import { api } from "./api.js";
import { $, el } from "./dom.js";
import { showError } from "./problems.js";
import { ADMIN, can } from "./roles.js";
import { body, errors, fill, known, line, refused, tenantName, wire as wireForm } from "./alerts-form.js";
import { when } from "./words.js";

const state = { alerts: [], version: null, episodes: [], leftOut: 0, tenantsRead: false, editing: null, back: "#" };
const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
const CLOSED = new Set(["resolved", "closed", "canceled"]);

function say(text) {
  $("alerts-result").textContent = text;
}

export async function open(back) {
  if (back !== undefined) state.back = back;
  $("alerts-back").setAttribute("href", state.back && state.back !== "#" ? state.back : window.location.pathname);
  $("alerts-who").textContent = can(ADMIN) ? "" : "Only an admin of the connector (app role Connector.Admin) can "
    + "change them.";
  $("alerts-error").hidden = true;
  closeForm();
  try {
    await load();
  } catch (error) {
    showError($("alerts-error"), error);
  }
}

async function load() {
  const [alerts, tenants] = await Promise.allSettled([api("/api/alerts"), api("/api/tenants")]);
  if (alerts.status === "rejected") throw alerts.reason;
  state.alerts = alerts.value.alerts || [];
  state.version = alerts.value.version;
  state.episodes = alerts.value.episodes || [];
  state.leftOut = alerts.value.episodesLeftOut || 0;  // over the 1000 shown: an alert's may all be among them
  known.tenants = tenants.status === "fulfilled" ? tenants.value.tenants || [] : [];
  state.tenantsRead = tenants.status === "fulfilled";
  const saved = alerts.value.savedAt;
  $("alerts-saved").textContent = saved ? `Saved ${when(saved)}${alerts.value.savedBy ? ` by ${alerts.value.savedBy}`
    : ""}.` : "";
  render();
}

function render() {
  const admin = can(ADMIN);
  $("alert-new").hidden = !admin;
  $("alert-manage-head").hidden = !admin;
  $("alert-table").tBodies[0].replaceChildren(...state.alerts.map((a, i) => row(a, i, admin)));
  $("alert-table").closest(".scroll").hidden = !state.alerts.length;
  const left = state.leftOut ? `. ${count(state.leftOut, "more episode is", "more episodes are")} not shown: the `
    + "Alerts view shows 1000, the failing first, then the newest." : "";
  $("alerts-summary").textContent = state.alerts.length ? count(state.alerts.length, "alert", "alerts") + left
    : `No alerts yet.${admin ? " New alert makes one." : ""}`;
}

// A ticket as a link into ServiceNow (its number; "pending" before the record is made).
function ticketLink(t) {
  return t.url ? el("a", { href: t.url, target: "_blank", rel: "noopener" }, t.number || "pending")
    : t.number || "pending";
}

// A failed step: what failed, the connector's words, and what to do (the fix provisioning's score_alerts gives).
function failed(episode, whose) {
  const detail = String(episode.error.detail || episode.error.code).replace(/[.\s]+$/, "");
  return el("span", { className: "problem" }, el("strong", {}, `Failed for ${whose}: `), `${detail}.`,
    el("span", { className: "fix" }, `What to do: ${episode.error.fix}`));
}

// An episode's ticket in words: open (a link), closed by a person or gone from ServiceNow while the score is still
// across, or on its way. Its `ticketDetails` are only ever the episode's own tenant's ticket (GET /api/alerts takes
// it as the engine does), so one tenant's ticket never shows under another.
function ticketWords(alert, episode, whose) {
  const ticket = episode.ticketDetails || undefined;
  if (episode.state === "over") return null;  // shown for its error only
  if (episode.state === "opening" && !checks(alert, episode.tenant)) {
    return `Waiting: the alert no longer checks ${whose}, so its ticket is not being made`;
  }
  if (episode.state === "opening") return episode.error ? null : `Opening: its ticket is being made (${whose})`;
  if (episode.state === "resolving" && !checks(alert, episode.tenant)) {
    return `Waiting: the alert no longer checks ${whose}, so its ticket is not being resolved`;
  }
  if (ticket && !CLOSED.has(ticket.status) && ticket.status !== "missing") {
    return [episode.state === "resolving" ? "The score recovered; resolving: " : "Open: ", ticketLink(ticket),
      ` (${whose})`];
  }
  if (episode.state === "open" && ticket && ticket.status === "missing") {
    return `Ticket ${ticket.number || ""} is no longer in ServiceNow (deleted, or hidden from the connector); the `
      + `score is still under the line (${whose})`;
  }
  if (episode.state === "open" && ticket) {
    return `Ticket closed by a person; the score is still under the line (${whose})`;
  }
  return episode.state === "resolving" ? `The score recovered; resolving its ticket (${whose})` : `Open (${whose})`;
}

// Whether the alert still checks the tenant: in its tenants, and not removed (GET /api/tenants lists it). One it no
// longer checks is never stepped again, so it waits (docs/alerts.md#removing-an-alert).
function checks(alert, tenant) {
  if (alert.tenants !== "all" && !(alert.tenants || []).includes(tenant)) return false;
  return tenant === "home" || !state.tenantsRead || known.tenants.some((t) => !t.home && t.id === tenant);
}

// Each tenant's episode of an alert (GET /api/alerts `episodes`): what it is doing, and a failure as a problem.
function episodesOf(alert) {
  const mine = state.episodes.filter((e) => e.alert === alert.id);
  const nodes = [];
  for (const episode of mine) {
    const whose = tenantName(episode.tenant);
    if (episode.error) nodes.push(failed(episode, whose));
    const words = ticketWords(alert, episode, whose);
    if (words) nodes.push(el("span", { className: "ticket" }, ...[words].flat()));
  }
  return nodes.length ? nodes : [state.leftOut ? "None among those shown" : "None open"];
}

function row(alert, i, admin) {
  const tenants = alert.tenants === "all" ? "All" : alert.tenants.map(tenantName).join(", ");
  return el("tr", { "data-id": alert.id },
    el("th", { scope: "row", className: "name" }, alert.name,
      alert.name !== alert.id ? el("span", { className: "sub" }, alert.id) : null),
    el("td", { className: "name", "data-label": "Tenants" }, tenants),
    el("td", { "data-label": "Line" }, line(alert)),
    el("td", { className: "name tickets", "data-label": "Tickets and failures" }, ...episodesOf(alert)),
    admin ? el("td", { className: "manage" },
      el("button", { type: "button", className: "button", "data-edit": String(i),
        "aria-label": `Edit ${alert.name}` }, "Edit"),
      el("button", { type: "button", className: "button danger", "data-remove": String(i),
        "aria-label": `Remove ${alert.name}` }, "Remove")) : null);
}

// -- the form --------------------------------------------------------------------------------------------------
function openForm(index) {
  state.editing = index;
  say("");  // the last save's words are not about this change
  const alert = index === null ? null : state.alerts[index];
  fill(alert);
  $("alert-form-title").textContent = alert ? `Edit: ${alert.name}` : "New alert";
  $("alert-save").textContent = alert ? "Save" : "Save the alert";
  $("alert-part").hidden = false;
  $("alert-form-title").focus();
}

function closeForm() {
  state.editing = null;
  $("alert-part").hidden = true;
  $("alert-form-error").hidden = true;
}

// The whole list, with `change` applied, under the version read: the server keeps all or nothing.
async function put(list) {
  return api("/api/alerts", { method: "PUT", headers: { "If-Match": `"${state.version}"` }, body: { alerts: list } });
}

// Someone saved the list meanwhile: nothing of ours was kept; the admin may reload it and make the change again.
function stale(target) {
  const reload = el("button", { type: "button", className: "button", id: "alerts-reload" }, "Reload the alerts");
  reload.addEventListener("click", async () => {
    await open();
    say("These are the alerts now: make your change again.");
    $("alerts-result").focus();
  });
  target.replaceChildren(el("strong", {}, "Someone else changed the alerts since you read them"),
    ": nothing of yours is saved. Reload them and make your change again. ", reload);
  target.hidden = false;
  target.focus();
}

async function save(event) {
  event.preventDefault();
  const button = $("alert-save");
  button.disabled = true;
  errors.clear();
  const mine = body();
  const index = state.editing === null ? state.alerts.length : state.editing;
  const list = state.alerts.map((a, i) => (i === index ? mine : a));
  if (index === state.alerts.length) list.push(mine);
  try {
    const answer = await put(list);
    state.version = answer.version;
    await load();
    closeForm();
    say(`The alert "${mine.name || mine.id}" is saved: ${count(state.alerts.length, "alert", "alerts")}.`);
    $("alerts-result").focus();
  } catch (error) {
    if (error.status === 412) stale($("alert-form-error"));
    else if (error.status === 400) refused(error, index, list);
    else {
      showError($("alert-form-error"), error);
      $("alert-form-error").focus();
    }
  } finally {
    button.disabled = false;
  }
}

async function remove(index) {
  const alert = state.alerts[index];
  if (!window.confirm(`Remove the alert "${alert.name}"? Its open tickets stay as they are.`)) return;
  $("alerts-error").hidden = true;
  try {
    await put(state.alerts.filter((_, i) => i !== index));
    await load();
    closeForm();
    say(`The alert "${alert.name}" is removed. Its open tickets stay as they are.`);
    $("alerts-result").focus();
  } catch (error) {
    if (error.status === 412) stale($("alerts-error"));
    else {
      showError($("alerts-error"), error);
      $("alerts-error").focus();
    }
  }
}

// Whether the form an admin has open says something other than the alert read (for a new one: anything typed).
export function unsaved() {
  if ($("alerts").hidden || $("alert-part").hidden || !can(ADMIN)) return false;
  const mine = body();
  if (state.editing === null) return Boolean(mine.name || mine.id || mine.below !== undefined
    || mine.dropOf !== undefined || mine.within !== undefined || mine.tenants !== "all");
  const read = state.alerts[state.editing];
  const keys = ["name", "tenants", "below", "dropOf"];
  const differs = keys.some((k) => JSON.stringify(mine[k] ?? null) !== JSON.stringify(read[k] ?? null));
  return differs || (mine.within ?? 7) !== (read.within ?? 7);
}

function onTable(event) {
  const button = event.target.closest("button");
  if (!button) return;
  if (button.dataset.edit !== undefined) openForm(Number(button.dataset.edit));
  else if (button.dataset.remove !== undefined) remove(Number(button.dataset.remove));
}

export function wire() {
  wireForm();
  $("alert-new").addEventListener("click", () => openForm(null));
  $("alert-cancel").addEventListener("click", () => {
    closeForm();
    $("alerts-title").focus();
  });
  $("alert-form").addEventListener("submit", save);
  $("alert-table").addEventListener("click", onTable);
}
