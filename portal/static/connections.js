// The ServiceNow connections card (docs/design.md#connections-and-routes), from GET /api/connections and each
// connection's GET /api/provisioning: the default connection (the app settings') first, then the instances added since,
// each with its state, table, last status sync and failing checks; for admins Connect / Reconnect, Disconnect, Remove
// and "Add a ServiceNow instance". With the default connection alone the card is the one-connection card it always was.
import { api } from "./api.js";
import { $, el, notice } from "./dom.js";
import { act, advice, formErrors, problemNodes } from "./problems.js";
import { ADMIN, can } from "./roles.js";
import { when } from "./words.js";

const WORDS = {
  connected: ["Connected", "ok"], degraded: ["Connected, but something needs attention", "warn"],
  not_connected: ["Not connected to ServiceNow", "bad"], not_configured: ["Not configured", "bad"],
  reauthorization_required: ["ServiceNow authorization must be renewed", "bad"],
};
const FIELDS = { id: "The id", instance: "The instance", clientId: "The client ID",
  clientSecret: "The client secret", table: "The table" };
const DEFAULT = "default";
const state = { list: [], redirectUri: null, listing: null, entries: new Map(), added: null, checks: [] };
let changed = async () => {};

export const several = () => state.list.length > 1;
// The connections of the latest load (tickets name theirs when there are several); [] when they are unknown.
export const listed = () => (state.listing || Promise.resolve([])).catch(() => []);

// -- the entries: the default's is the page's own markup (its state a live region), the others are built --------
function defaultEntry() {
  return { li: $("connection-list").firstElementChild, name: $("default-name"), state: $("connection-state"),
    about: $("connection-about"), checks: $("checks"), connect: $("connect"), disconnect: $("disconnect"),
    remove: null };
}

function addedEntry(id) {
  const parts = { name: el("h3", { className: "entry-name" }, id), state: el("p", { className: "state" }),
    about: el("p", { className: "muted about" }), checks: el("ul", { className: "checks" }),
    connect: el("a", { className: "button primary", href: `/api/connect?connection=${encodeURIComponent(id)}` }),
    disconnect: el("button", { type: "button", className: "button", "aria-label": `Disconnect ${id}` }, "Disconnect"),
    remove: el("button", { type: "button", className: "button danger", "aria-label": `Remove ${id}` }, "Remove") };
  parts.li = el("li", { className: "entry", "data-connection": id }, parts.name, parts.state, parts.about,
    parts.checks, el("div", { className: "buttons" }, parts.connect, parts.disconnect, parts.remove));
  parts.disconnect.addEventListener("click", () => disconnectOne(id, parts));
  parts.remove.addEventListener("click", () => removeOne(id, parts));
  return parts;
}

export async function load() {
  state.listing = api("/api/connections").then((answer) => {
    state.list = answer.connections || [];
    state.redirectUri = answer.redirectUri || null;
    return state.list;
  }, (error) => {
    state.list = [];  // unknown: the default's entry alone, with the error
    throw error;
  });
  const [status, list] = await Promise.allSettled([api("/api/provisioning"), state.listing]);
  const added = list.status === "fulfilled" ? list.value.filter((c) => !c.default) : [];
  // Each added connection's own checks (its provisioning), asked together; one failing never hides the others.
  const own = await Promise.allSettled(added.map((c) => api(`/api/provisioning?connection=${encodeURIComponent(c.id)}`)));
  state.checks = status.status === "fulfilled" ? status.value.checks || [] : [];
  render(status, list, added, own);
}

// The Microsoft tenants' checks of the latest load (group "tenant"): each tenant's page shows its own.
export const tenantChecks = () => state.checks.filter((c) => c.group === "tenant");

function render(status, list, added, own) {
  const byId = new Map(state.list.map((c) => [c.id, c]));
  fill(DEFAULT, state.entries.get(DEFAULT), byId.get(DEFAULT), status);
  const wanted = new Set(added.map((c) => c.id));
  for (const [id, parts] of state.entries) {
    if (id !== DEFAULT && !wanted.has(id)) { parts.li.remove(); state.entries.delete(id); }
  }
  added.forEach((connection, i) => {
    if (!state.entries.has(connection.id)) {
      state.entries.set(connection.id, addedEntry(connection.id));
      $("connection-list").append(state.entries.get(connection.id).li);
    }
    fill(connection.id, state.entries.get(connection.id), connection, own[i]);
  });
  const many = several();
  $("connection-title").textContent = many ? "ServiceNow connections" : "ServiceNow connection";
  $("connection").parentElement.classList.toggle("several", many);  // the card takes the row (app.css)
  $("add-connection").hidden = !can(ADMIN) || list.status !== "fulfilled";
  for (const stale of $("connection-list").querySelectorAll(".list-error")) stale.remove();
  if (list.status === "rejected") {
    $("connection-list").append(el("li", { className: "entry list-error" }, ...problemNodes(list.reason)));
  }
}

// One entry from its provisioning (`status`, a settled promise) and its line of GET /api/connections.
function fill(id, parts, connection, status) {
  const found = status && status.status === "fulfilled" ? status.value : null;
  const failure = status && status.status === "rejected" ? status.reason : null;
  const key = found ? found.state : connection ? connection.state : null;
  // Another connection's check belongs to its own entry: on the default's it would say everything twice. A Microsoft
  // tenant's checks (group "tenant") are that tenant's, on its row and page, never the ServiceNow card's.
  const failing = found ? found.checks.filter((c) => !c.ok && c.group !== "tenant"
    && !(several() && c.name === "servicenow_connection")) : [];
  const shown = key === "degraded" && !failing.length ? "connected" : key;
  const [label, tone] = WORDS[shown] || [shown || "The connection state is not available.", "warn"];
  const instance = (found && found.instance) || (connection && connection.instance);
  const user = (found && found.connectedAs) || (connection && connection.connectedAs);
  parts.state.textContent = label + (key && instance ? ` – ${instance}` : "") + (key && user ? ` as ${user}` : "");
  parts.state.className = `state ${tone}`;
  parts.name.hidden = !several();
  parts.name.textContent = id;
  // Alone, its last sync is on the tickets card, as it always was; with several, each entry shows its own.
  parts.about.textContent = !connection ? "" : several() ? about(connection) : `Table ${connection.table}`;
  parts.checks.replaceChildren(...failing.map((c) => el("li", {}, el("strong", {}, c.name.replaceAll("_", " ")),
    ": ", c.detail, c.remediation ? el("span", { className: "fix" }, `What to do: ${advice(c.remediation)}`) : null)),
  ...(failure ? [el("li", {}, ...problemNodes(failure))] : []));
  const connected = !["not_connected", "not_configured"].includes(key);
  const named = several() || id !== DEFAULT;
  parts.connect.hidden = !can(ADMIN) || !key;
  parts.connect.textContent = connected ? "Reconnect" : named ? "Connect" : "Connect to ServiceNow";
  if (named) parts.connect.setAttribute("aria-label", `${parts.connect.textContent} ${id}`);
  else parts.connect.removeAttribute("aria-label");
  parts.disconnect.hidden = !(can(ADMIN) && key && connected);
  if (named) parts.disconnect.setAttribute("aria-label", `Disconnect ${id}`);
  else parts.disconnect.removeAttribute("aria-label");
  if (parts.remove) parts.remove.hidden = !can(ADMIN);
}

function about(connection) {
  return [`Table ${connection.table}`, syncWords(connection.lastSync)].join(" · ");
}

function syncWords(sync) {
  if (!sync) return "Not synced yet";
  if (sync.status === "failed") return `Status sync ${when(sync.at)} failed`;
  return `Status sync ${when(sync.at)}: ${sync.status}, ${sync.changed} changed`;
}

// The tickets card's sync line when several instances sync, each on its own.
export function syncSummary(list) {
  const failed = list.filter((c) => c.lastSync && c.lastSync.status === "failed").map((c) => c.id);
  if (failed.length) return `Status sync failed on ${failed.join(", ")}: the connections card says why and what to do.`;
  const times = list.map((c) => c.lastSync && c.lastSync.at).filter(Boolean).sort();
  return times.length ? `Last status sync ${when(times[times.length - 1])}; each instance's own is on the `
    + "connections card." : "The status sync has not run yet.";
}

// -- admin actions: what each did is in the notice; a refusal shows in the card, with what to do ---------------
function disconnectOne(id, parts) {
  const connection = state.list.find((c) => c.id === id);
  const what = several() ? `${id} (${connection ? connection.instance : id})` : "from ServiceNow";
  if (!window.confirm(`Disconnect ${what}? The connector revokes its tokens; tickets stay.`)) return;
  const path = id === DEFAULT ? "/api/disconnect" : `/api/disconnect?connection=${encodeURIComponent(id)}`;
  act(parts.disconnect, async () => {
    await api(path, { method: "POST" });
    notice(several() ? `${id} is disconnected: its tokens are revoked; its tickets stay.`
      : "Disconnected from ServiceNow: the connector's tokens are revoked; tickets stay.");
    await changed();
    parts.connect.focus();
  }, $("connections-error"));
}

function removeOne(id, parts) {
  const connection = state.list.find((c) => c.id === id);
  if (!window.confirm(`Remove the connection ${id} (${connection ? connection.instance : id})? The connector revokes `
    + "its tokens and forgets its client secret; its tickets stay in ServiceNow.")) return;
  act(parts.remove, async () => {
    let answer;
    try {
      answer = await api(`/api/connections/${encodeURIComponent(id)}`, { method: "DELETE" });
    } catch (error) {
      const nodes = problemNodes(error);
      nodes[0] = el("strong", {}, `${id} is not removed.`);  // instead of the problem's title: what did not happen
      const problem = error.problem || {};
      if (problem.rules && problem.rules.length && problem.routesUrl) {  // where those rules are changed
        nodes.push(" ", el("a", { href: problem.routesUrl, id: "connections-routes-link" }, "Open the Routes view"));
      }
      $("connections-error").replaceChildren(...nodes);
      $("connections-error").hidden = false;
      $("connections-error").focus();
      return;
    }
    // What remains of it, where and until when (its secrets in Key Vault): said as the removal answers it.
    notice([el("strong", {}, `${id} is removed.`), " ", answer.detail, answer.remains ? ` ${answer.remains}` : ""]);
    $("notice").focus();  // at once: its entry (and the button pressed) goes with the new list
    await changed();
  }, $("connections-error"));
}

// -- adding an instance: the form, then the Redirect URL to register there and its Connect --------------------
const form = formErrors("c-", FIELDS, "connection-dialog-error");

function step(added) {
  $("connection-form").hidden = added;
  $("connection-added").hidden = !added;
  $("connection-dialog").setAttribute("aria-labelledby", added ? "connection-added-title" : "connection-dialog-title");
}

// The Redirect URL every OAuth client of the connector registers (the one callback serves them all).
function redirect(id) {
  const field = $(id);
  field.value = state.redirectUri || "";
  field.hidden = field.labels[0].hidden = !state.redirectUri;
}

function openAdd() {
  state.added = null;
  $("connection-form").reset();
  form.clear();
  step(false);
  redirect("c-redirect");
  $("connection-submit").disabled = false;
  $("connection-dialog").showModal();
  $("c-id").focus();
}

async function submitAdd(event) {
  event.preventDefault();
  form.clear();
  const body = {};
  for (const field of Object.keys(FIELDS)) {
    const value = $(`c-${field}`).value.trim();
    if (value || field !== "table") body[field] = value;  // the table is optional: incident when not named
  }
  $("connection-submit").disabled = true;
  let added;
  try {
    added = await api("/api/connections", { method: "POST", body });
  } catch (error) {
    form.answer(error);
    $("connection-submit").disabled = false;
    return;
  }
  state.added = added;
  $("connection-form").reset();  // the secret leaves the page at once
  $("connection-added-title").textContent = `${added.id} is added`;
  $("connection-added-what").textContent = `Before you connect it, check that its OAuth client in ${added.instance} `
    + "has this Redirect URL. Then press Connect, sign in to that instance as its integration user, and press Allow.";
  redirect("c-added-redirect");
  const connect = $("connection-added-connect");
  connect.setAttribute("href", `/api/connect?connection=${encodeURIComponent(added.id)}`);
  connect.setAttribute("aria-label", `Connect ${added.id}`);
  step(true);
  connect.focus();
  notice(`${added.id} (${added.instance}) is added, not connected yet: its Connect, on the card, connects it.`);
  await changed();
  if (!$("connection-dialog").open) focusAdded();  // closed before its entry was there
}

// After the dialog: the new entry's Connect, once the card shows it.
function focusAdded() {
  const entry = state.added && state.entries.get(state.added.id);
  (entry ? entry.connect : $("add-connection")).focus();
}

export function wire(onChange) {
  changed = onChange;
  for (const field of [$("c-redirect"), $("c-added-redirect")]) field.addEventListener("focus", () => field.select());
  state.entries.set(DEFAULT, defaultEntry());
  $("disconnect").addEventListener("click", () => disconnectOne(DEFAULT, state.entries.get(DEFAULT)));
  $("add-connection").addEventListener("click", openAdd);
  $("connection-form").addEventListener("submit", submitAdd);
  $("connection-cancel").addEventListener("click", () => $("connection-dialog").close());
  $("connection-done").addEventListener("click", () => $("connection-dialog").close());
  $("connection-dialog").addEventListener("close", () => {  // a task after the dialog gave focus to its opener
    if (state.added) focusAdded();
    else if (document.activeElement === document.body) $("add-connection").focus();
  });
}
