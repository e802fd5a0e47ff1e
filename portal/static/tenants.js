// The tenant overview (docs/design.md#several-microsoft-tenants): every Microsoft tenant the connector reads, from GET
// /api/tenants, with its score and trend, open actions, tickets and health; for admins, adding a tenant (its consent
// link to copy), naming, removing one, pausing and resuming the home tenant. view.js decides the view, and is called
// back after an admin's action (wire's onChange). A tenant whose admin consented is "confirming" until a token and a
// read prove it (docs/admin-guide.md, 10.4).
import { api } from "./api.js";
import { $, el, notice } from "./dom.js";
import { act, formErrors, problemNodes, showError } from "./problems.js";
import * as progress from "./refreshing.js";
import { ADMIN, can } from "./roles.js";
import { refreshWords, when } from "./words.js";

const STATES = { active: ["Active", "done"], pending: ["Waiting for consent", "open"], paused: ["Paused", ""],
  confirming: ["Confirming consent", "open"] };
const ASK = "a Global Administrator or Privileged Role Administrator of that tenant";
const FIELDS = { tenant: "The tenant", name: "The name" };
const state = { rows: [], copyButtons: new Map(), opener: null, added: false, renaming: null };

export const key = (row) => (row.home ? "home" : row.id);
const stateLabel = (row) => STATES[row.state] || [row.state, ""];

export async function load() {
  const answer = await api("/api/tenants");
  state.rows = answer.tenants || [];
  progress.show(answer.refreshing || null);  // a refresh queued per tenant, while it runs
  return state.rows;
}

// In the table: whether the admin is in it (the overview is then not drawn again under them).
export const inTable = () => $("tenant-table").contains(document.activeElement);

// One tenant, read as always: today's page. A paused home tenant alone still gets the overview (to resume it).
export const several = () => state.rows.length > 1 || state.rows.some((row) => row.state !== "active");
export const find = (wanted) => state.rows.find((row) => key(row) === wanted || row.id === wanted) || null;

function about(row) {
  if (row.home) return "This deployment's own tenant";
  return row.domain && row.domain !== row.name ? row.domain : null;
}

// The line under a tenant's name in its own view: where it is, and whether it is read.
export function describe(row) {
  return [about(row), stateLabel(row)[0]].filter(Boolean).join(" · ");
}

const points = (value) => String(Math.round(value * 100) / 100);
const signed = (change) => (change > 0 ? `+${points(change)}` : change < 0 ? `−${points(-change)}` : "no change");

function scoreCell(row) {
  if (!row.score || row.score.current === null || row.score.current === undefined) return ["Not read yet"];
  const trend = [["7", row.change7], ["30", row.change30]]
    .map(([days, change]) => (change === null || change === undefined ? `${days} days: –` : `${signed(change)} in ${days} days`));
  return [el("span", { className: "score-line" }, el("strong", {}, `${points(row.score.current)} of ${points(row.score.max)}`),
    ` (${row.score.percent}%)`), ...trend.map((text) => el("span", { className: "sub change" }, text))];
}

function ticketsCell(row) {
  const overdue = row.overdueTickets || 0;
  return [`${row.openTickets || 0} open`,
    el("span", { className: overdue ? "sub overdue" : "sub" }, overdue ? `${overdue} overdue` : "none overdue")];
}

// Consent came back; Microsoft applies it to the tenant's tokens within minutes, and the connector proves it with a
// read. Until then the row says so; a problem that is not "not applied yet" (the deployment's own setup) shows too.
function confirmingCell(row) {
  const plan = row.confirming || {};
  const next = plan.nextAttemptAt ? `next check ${when(plan.nextAttemptAt)}` : "next check at the next refresh";
  const nodes = [el("span", {}, el("strong", {}, "Consent received"), plan.since ? ` ${when(plan.since)}. ` : ". ",
    "Microsoft is applying it to the tenant's tokens, which can take a few minutes; the connector confirms it with "
    + `a read (${next}; it keeps trying until ${plan.until ? when(plan.until) : "24 hours have passed"}).`)];
  const error = row.lastError;  // "not applied yet" (tenant_not_consented) is what the line above says already
  if (error && error.code !== "tenant_not_consented") {
    nodes.push(el("span", { className: "problem" }, el("strong", {}, "Not read yet: "), error.detail,
      error.remediation ? el("span", { className: "fix" }, `What to do: ${error.remediation}`) : null));
  }
  return nodes;
}

// Its queued refreshes that failed every try sit in the poison queue: what the admin does is on provisioning's
// refresh_queue check and in the admin guide (10.5a); the row says it is so, and when.
function poisonedNode(row) {
  const stuck = row.poisoned;
  if (!stuck) return null;
  const last = stuck.lastAt ? ` (the last ${when(stuck.lastAt)})` : "";
  return el("span", { className: "problem" }, el("strong", {}, "Queued refresh failed: "),
    `${count(stuck.messages, "message", "messages")} in ${stuck.queue}${last} failed every try.`,
    el("span", { className: "fix" }, "What to do: fix what the error names (when "
      + "none is shown, see the secure_score_tenant failures in Application Insights); the next refresh queues the "
      + "tenant again, and the message can then be cleared (admin guide, 10.5a)."));
}

const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;

function healthCell(row) {
  if (row.state === "confirming") return confirmingCell(row);
  const nodes = [poisonedNode(row)].filter(Boolean);
  const error = row.lastError;
  if (error) {
    nodes.push(el("span", { className: "problem" }, el("strong", {}, "Not read: "), error.detail,
      error.remediation ? el("span", { className: "fix" }, `What to do: ${error.remediation}`) : null));
  } else if (row.state === "pending") {
    nodes.push(el("span", {}, "Not read until an admin of the tenant consents."));
  } else if (row.state === "paused") {
    nodes.push(el("span", {}, "Not read while paused."));
  }
  if (!error && row.lastRefresh && row.lastRefresh.at) {
    nodes.push(el("span", { className: nodes.length ? "sub" : "" }, `Read ${when(row.lastRefresh.at)}`));
  } else if (!error && row.state === "active") {
    nodes.push(el("span", {}, "Not read yet: the next refresh reads it."));
  }
  if (row.state === "pending" || row.consentUrl) nodes.push(consentBlock(row));
  return nodes;
}

// The consent link is a capability: GET /api/tenants gives it to admins only, while a consent is awaited. It is
// copied with one press, opened with another (an admin who is also that tenant's, or trying it locally), and shown
// whole, wrapped, where focus or a click selects all of it (to copy by hand).
function consentBlock(row) {
  if (!can(ADMIN)) return el("span", { className: "sub" }, "An admin of the connector has its consent link.");
  if (!row.consentUrl && row.consent === "reported") {
    return el("span", { className: "sub" }, "Its admin consented: the next refresh confirms it with a read.");
  }
  if (!row.consentUrl) {
    const renew = el("button", { type: "button", className: "button", "aria-label": `New consent link for ${row.name}` },
      "New consent link");
    renew.addEventListener("click", () => renewLink(row, renew));
    return el("span", { className: "consent" }, el("span", { className: "sub" }, "Its 14-day consent link expired "
      + "unused."), renew);
  }
  const field = el("code", { className: "link", tabindex: "0", "aria-label": `Consent link for ${row.name}` },
    row.consentUrl);
  field.addEventListener("focus", () => window.getSelection().selectAllChildren(field));
  const button = el("button", { type: "button", className: "button copy", "aria-label": `Copy consent link for ${row.name}` },
    "Copy consent link");
  button.addEventListener("click", () => copy(row, field));
  const open = el("a", { className: "button open", href: row.consentUrl,
    "aria-label": `Open consent link for ${row.name}` }, "Open consent link");
  state.copyButtons.set(key(row), button);
  return el("span", { className: "consent" }, el("span", { className: "buttons" }, button, open), field);
}

// Adding a pending tenant whose link expired gives it a new one (the old one stops working).
async function renewLink(row, button) {
  button.disabled = true;
  try {
    await api("/api/tenants", { method: "POST", body: { tenant: row.id } });
    notice(`${row.name} has a new consent link: copy it and send it to ${ASK}.`);
    await changed("tenants");
    const copyButton = state.copyButtons.get(key(row));
    if (copyButton) copyButton.focus();
  } catch (error) {
    button.disabled = false;
    showError($("error"), error);
  }
}

async function copy(row, field) {
  let copied = false;
  try {
    await navigator.clipboard.writeText(row.consentUrl);
    copied = true;
  } catch {
    field.focus();  // which selects it
    try { copied = document.execCommand("copy"); } catch { copied = false; }
  }
  notice(copied ? `The consent link for ${row.name} is copied. Send it to ${ASK}: when they accept, the `
    + "connector reads the tenant." : `The consent link for ${row.name} is selected: press Ctrl+C (⌘C on a Mac) `
    + `to copy it, then send it to ${ASK}.`);
}

function manageCell(row) {
  const rename = el("button", { type: "button", className: "button", "aria-label": `Rename ${row.name}` }, "Rename");
  rename.addEventListener("click", () => openRename(row, rename));
  if (!row.home) {
    const remove = el("button", { type: "button", className: "button danger", "aria-label": `Remove ${row.name}` },
      "Remove");
    remove.addEventListener("click", () => removeTenant(row, remove));
    return [rename, remove];
  }
  if (row.state === "paused") {
    const resume = el("button", { type: "button", className: "button", "aria-label": `Resume ${row.name}` },
      "Resume");
    resume.addEventListener("click", () => resumeHome(row, resume));
    return row.id ? [rename, resume] : [];
  }
  const pause = el("button", { type: "button", className: "button", "aria-label": `Pause ${row.name}` }, "Pause");
  pause.addEventListener("click", () => pauseHome(row, pause));
  return row.id ? [rename, pause] : [];  // its id is known once it was read (or from the sign-in's tenant)
}

function renderRow(row) {
  const [label, tone] = stateLabel(row);
  const name = el("a", { className: "title", href: `#tenant=${encodeURIComponent(key(row))}` }, row.name);
  // data-label names each cell where the phone layout stacks a row (app.css).
  return el("tr", { "data-tenant": key(row) },
    el("td", { className: "tenant" }, name, about(row) ? el("span", { className: "sub" }, about(row)) : null,
      el("a", { className: "sub review", href: `#review/${encodeURIComponent(key(row))}`,
        "aria-label": `Review of ${row.name}` }, "Review")),
    el("td", { className: "state", "data-label": "State" }, el("span", { className: `status ${tone}` }, label)),
    el("td", { className: "score", "data-label": "Secure Score" }, ...scoreCell(row)),
    el("td", { className: "num open-actions", "data-label": "Open actions" },
      row.openRecommendations === null || row.openRecommendations === undefined ? "–" : row.openRecommendations),
    el("td", { className: "tickets", "data-label": "Tickets" }, ...ticketsCell(row)),
    el("td", { className: "health", "data-label": "Health" }, ...healthCell(row)),
    can(ADMIN) ? el("td", { className: "manage" }, ...manageCell(row)) : null);
}

export function render() {
  state.copyButtons.clear();
  $("tenant-table").tBodies[0].replaceChildren(...state.rows.map(renderRow));
  $("manage-head").hidden = !can(ADMIN);
  $("add-tenant").hidden = !can(ADMIN);
  $("refresh-all").hidden = !can(ADMIN);
  const waiting = state.rows.filter((row) => row.state === "pending").length;
  const confirming = state.rows.filter((row) => row.state === "confirming").length;
  const failing = state.rows.filter((row) => (row.lastError || row.poisoned) && row.state !== "confirming").length;
  const overdue = state.rows.reduce((sum, row) => sum + (row.overdueTickets || 0), 0);
  $("tenants-summary").textContent = [`${state.rows.length} tenants`, waiting ? `${waiting} waiting for consent` : null,
    confirming ? `${confirming} confirming consent` : null, failing ? `${failing} not read (see Health)` : null,
    `${overdue} overdue ${overdue === 1 ? "ticket" : "tickets"} in all`].filter(Boolean).join(" · ");
  watchConfirming();
}

// While a consent is being confirmed (the connector checks it on its own timer), the overview reads the tenants
// again every 10 seconds, so Confirming turns Active with no reload; never while the admin is in the table.
let confirmTimer = null;
function watchConfirming() {
  window.clearTimeout(confirmTimer);
  if (!state.rows.some((row) => row.state === "confirming")) return;
  confirmTimer = window.setTimeout(() => {
    if ($("tenants").hidden || inTable()) watchConfirming();
    else reload();
  }, 10000);
}

export async function reload() {
  try {
    await load();
    render();
  } catch (error) {
    $("tenant-table").tBodies[0].replaceChildren(el("tr", {}, el("td", { colspan: 7 }, ...problemNodes(error))));
  }
}

// -- admin actions: each answer is shown in the notice (announced), then the view is decided again ---------------
let changed = async () => {};

function removeTenant(row, button) {
  if (!window.confirm(`Stop reading ${row.name}? Its tickets stay, in ServiceNow and in the connector.`)) return;
  act(button, async () => {
    const answer = await api(`/api/tenants/${encodeURIComponent(row.id)}`, { method: "DELETE" });
    notice([el("strong", {}, `${row.name} is no longer read.`), " ", answer.detail,
      answer.removeApp ? el("span", { className: "fix" }, answer.removeApp) : null]);
    $("notice").focus();  // at once: its row (and the button pressed) goes with the new list
    await changed();
  });
}

function pauseHome(row, button) {
  if (!window.confirm(`Pause reading ${row.name}? Its tickets stay; Resume reads it again.`)) return;
  act(button, async () => {
    await api(`/api/tenants/${encodeURIComponent(row.id)}`, { method: "DELETE" });
    notice(`${row.name} is paused: the connector no longer reads its Secure Score; its tickets stay. Resume reads `
      + "it again.");
    await changed();
    focusRow("home", ".manage button:last-child");
  });
}

function resumeHome(row, button) {
  act(button, async () => {
    await api("/api/tenants", { method: "POST", body: { tenant: row.id } });
    notice(`${row.name} is read again from the next refresh.`);
    await changed();
    focusRow("home", ".manage button:last-child");
  });
}

function focusRow(wanted, selector) {
  const found = document.querySelector(`#tenant-table tr[data-tenant="${CSS.escape(wanted)}"] ${selector}`);
  if (found) found.focus();
}

async function refreshAll(button) {
  await act(button, async () => {
    const result = await api("/api/recommendations/refresh", { method: "POST" });
    if (result.status === "queued") {  // 202: one refresh per tenant, on the queue; the progress shows meanwhile
      notice(progress.queuedWords(result));
      await reload();
      return;
    }
    const failed = (result.tenants || []).filter((t) => t.status === "failed").length;
    notice(failed ? `Secure Score is read; ${failed} tenant(s) could not be read (their Health says why)`
      + refreshWords(result) : `Secure Score is read for every tenant${refreshWords(result)}`);
    await reload();
  });
}

// -- adding a tenant ---------------------------------------------------------------------------------------------
const form = formErrors("n-", FIELDS, "tenant-dialog-error");

function openAdd(opener) {
  state.opener = opener;
  state.added = false;
  $("tenant-form").reset();
  form.clear();
  $("tenant-submit").disabled = false;
  $("tenant-dialog").showModal();
  $("n-tenant").focus();
}

async function submitAdd(event) {
  event.preventDefault();
  form.clear();
  const tenant = $("n-tenant").value.trim();
  const name = $("n-name").value.trim();
  if (!tenant) {
    form.show("tenant", "Give the tenant's id or one of its domains");
    $("n-tenant").focus();
    return;
  }
  $("tenant-submit").disabled = true;
  try {
    const added = await api("/api/tenants", { method: "POST", body: name ? { tenant, name } : { tenant } });
    state.added = true;
    $("tenant-dialog").close();
    if (added.consentUrl) {
      const until = added.consentExpiresAt ? ` The link works once, until ${when(added.consentExpiresAt)}.` : "";
      notice(`${added.name} is added and waits for consent: copy its consent link and send it to ${ASK}.${until}`);
    } else {
      notice("This organization's own tenant is read again from the next refresh.");
    }
    await changed("tenants");
    const copyButton = state.copyButtons.get(added.home ? "home" : added.id);
    if (copyButton) copyButton.focus(); else $("notice").focus();
  } catch (error) {
    form.answer(error);
    $("tenant-submit").disabled = false;
  }
}

// -- naming a tenant (one added by its domain is named by it until then) ------------------------------------------
const renameForm = formErrors("rn-", { name: "The name" }, "rename-dialog-error");

function openRename(row, opener) {
  state.renaming = row;
  state.opener = opener;
  state.added = false;
  renameForm.clear();
  $("rename-dialog-title").textContent = `Rename ${row.name}`;
  $("rn-name").value = row.name;
  $("rename-submit").disabled = false;
  $("rename-dialog").showModal();
  $("rn-name").select();
}

async function submitRename(event) {
  event.preventDefault();
  renameForm.clear();
  const row = state.renaming;
  const name = $("rn-name").value.trim();
  if (!name) {
    renameForm.show("name", "Give the tenant a name");
    $("rn-name").focus();
    return;
  }
  $("rename-submit").disabled = true;
  try {
    const renamed = await api(`/api/tenants/${encodeURIComponent(row.id)}`, { method: "PATCH", body: { name } });
    state.added = true;
    $("rename-dialog").close();
    notice(`${row.name} is now named ${renamed.name}.`);
    await changed("tenants");
    focusRow(key(row), ".manage button");
  } catch (error) {
    renameForm.answer(error);
    $("rename-submit").disabled = false;
  }
}

export function wire(onChange) {
  changed = onChange;
  $("add-tenant").addEventListener("click", () => openAdd($("add-tenant")));
  $("add-first").addEventListener("click", () => openAdd($("add-first")));
  $("refresh-all").addEventListener("click", () => refreshAll($("refresh-all")));
  $("tenant-form").addEventListener("submit", submitAdd);
  $("tenant-cancel").addEventListener("click", () => $("tenant-dialog").close());
  $("rename-form").addEventListener("submit", submitRename);
  $("rename-cancel").addEventListener("click", () => $("rename-dialog").close());
  $("rename-dialog").addEventListener("close", () => {
    if (!state.added && state.opener && document.activeElement === document.body) state.opener.focus();
  });
  // Closing a modal dialog gives focus back to its opener already; the close event comes a task later, when the
  // user may have moved on: it only catches a focus that was lost.
  $("tenant-dialog").addEventListener("close", () => {
    if (!state.added && state.opener && document.activeElement === document.body) state.opener.focus();
  });
}
