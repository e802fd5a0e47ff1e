// Which view the page shows, from its address: the one-tenant page, the tenant overview (#tenants), one tenant's page
// (#tenant=<id>, kept on reload), the Routes view (#routes), the Templates view (#templates, #templates/{id}), the
// Alerts view (#alerts) or a tenant's review (#review/{tenant}); and reading again what the view shows.
import * as actions from "./actions.js";
import * as alerts from "./alerts.js";
import * as connections from "./connections.js";
import { $, el, notice } from "./dom.js";
import { showError } from "./problems.js";
import * as progress from "./refreshing.js";
import * as review from "./review.js";
import { ADMIN, can } from "./roles.js";
import * as routes from "./routes.js";
import { shown } from "./scope.js";
import * as templates from "./templates.js";
import * as tenants from "./tenants.js";
import * as tickets from "./tickets.js";

const TITLE = document.title;
let back = "#";  // where the Routes or Templates view was opened from
const isTemplates = (hash) => hash === "#templates" || hash.startsWith("#templates/");
const isReview = (hash) => hash.startsWith("#review/");
const AWAY = ["routes", "templates", "alerts", "review"];  // the views shown alone, without the cards

export async function refreshAll() {
  const connection = connections.load();  // first: the tickets card waits for its list of connections
  const parts = shown.view === "overview" ? [tenants.reload()] : [actions.loadActions(), tickets.loadTickets()];
  await Promise.allSettled([connection, ...parts]);
  if (shown.view !== "overview") showTenantChecks();
}

// What needs attention in the tenant shown (its Secure Score, consent, notes): on its own Secure Score card, never
// on the ServiceNow card. Checks without a tenant are this organization's.
function showTenantChecks() {
  const home = !shown.tenant || shown.tenant === "home";
  const homeRow = tenants.find("home");
  const mine = connections.tenantChecks().filter((c) => !c.ok && (c.tenant
    ? c.tenant === shown.tenant || (home && homeRow && c.tenant === homeRow.id) : home));
  $("score-checks").replaceChildren(...mine.map((c) => el("li", {}, el("strong", {}, c.name.replaceAll("_", " ")),
    ": ", c.detail, c.remediation ? el("span", { className: "fix" }, `What to do: ${c.remediation}`) : null)));
}

function wantedTenant() {
  const hash = window.location.hash;
  if (!hash.startsWith("#tenant=")) return null;
  try { return decodeURIComponent(hash.slice("#tenant=".length)); } catch { return hash.slice("#tenant=".length); }
}

export async function route(moved = false) {
  if (window.location.hash === "#routes") {
    shown.view = "routes";
    layout(null);
    await routes.open(back);
    document.body.dataset.view = shown.view;
    if (moved) $("routes-title").focus();
    return;
  }
  if (window.location.hash === "#alerts") {  // the Alerts view (alerts.js)
    shown.view = "alerts";
    layout(null);
    await alerts.open(back);
    document.body.dataset.view = shown.view;
    if (moved) $("alerts-title").focus();
    return;
  }
  if (isTemplates(window.location.hash)) {
    shown.view = "templates";
    layout(null);
    await templates.open(back);
    document.body.dataset.view = shown.view;
    if (moved) $(templates.wanted() === null ? "templates-title" : "template-title").focus();
    return;
  }
  try {
    await tenants.load();
  } catch (error) {
    showError($("error"), error);  // the page of the home tenant, as it was before tenants
  }
  if (isReview(window.location.hash)) {  // after the tenants: the review names its tenant
    shown.view = "review";
    layout(null);
    await review.open(back);
    document.body.dataset.view = shown.view;
    if (moved) $("review-title").focus();
    return;
  }
  const several = tenants.several();
  const wanted = several ? wantedTenant() : null;
  // One tenant: its page has no address of its own (a simulator's link back names #tenant=home).
  if (!several && wantedTenant() !== null) window.history.replaceState(null, "", window.location.pathname);
  const row = wanted ? tenants.find(wanted) : null;
  if (wanted && !row) notice(`The connector reads no tenant "${wanted}": here are the ones it reads.`);
  const chosen = row ? tenants.key(row) : null;
  if (chosen !== shown.tenant) {
    tickets.showAll();
    actions.selected.clear();
    actions.select("", false);
  }
  shown.view = !several ? "single" : row ? "tenant" : "overview";
  shown.tenant = chosen;
  layout(row);
  if (shown.view === "overview") {
    tenants.render();
    await connections.load();
  } else {
    await refreshAll();
  }
  document.body.dataset.view = shown.view;
  document.body.dataset.tenant = shown.tenant || "";
  if (moved) $(shown.view === "tenant" ? "tenant-title" : "tenants-title").focus();
}

function layout(row) {
  const overview = shown.view === "overview";
  const away = AWAY.includes(shown.view);  // the Routes, Templates, Alerts or Review view alone
  for (const id of AWAY) $(id).hidden = shown.view !== id;
  $("connection").parentElement.hidden = away;
  $("tenants").hidden = !overview;
  for (const id of ["score", "servicenow", "actions"]) $(id).hidden = overview || away;
  $("connection").parentElement.classList.toggle("alone", overview);  // under the overview, the whole width
  $("tenant-bar").hidden = shown.view !== "tenant";
  $("add-first").hidden = !(shown.view === "single" && can(ADMIN));
  const skip = shown.view === "alerts" ? ["#alerts-title", "Skip to the alerts"]
    : shown.view === "templates" ? ["#templates-title", "Skip to the templates"]
    : shown.view === "review" ? ["#review-title", "Skip to the review"]
    : away ? ["#routes", "Skip to the routes"] : overview ? ["#tenants", "Skip to the tenants"]
      : ["#actions", "Skip to the improvement actions"];
  $("skip").setAttribute("href", skip[0]);
  $("skip").textContent = skip[1];
  if (row) {
    $("tenant-title").textContent = row.name;
    $("tenant-about").textContent = tenants.describe(row);
  }
  $("review-link").setAttribute("href", `#review/${encodeURIComponent(shown.tenant || "home")}`);
  const named = shown.view === "alerts" ? "Alerts" : shown.view === "templates" ? "Templates"
    : shown.view === "review" ? "Review" : away ? "Routes" : overview ? "Tenants" : row && row.name;
  document.title = shown.view === "single" ? TITLE : `${named} – ${TITLE}`;
}

// Only the view's own addresses choose the view: a skip link's #actions stays where it is. Leaving the Routes view
// (or a template's form) with unsaved changes asks first; staying puts the view's address back as the newest entry,
// so the address bar says where the admin is and the next Back asks again (never the browser's own leave-the-page
// prompt). The Routes and Templates views' Back leads where they were opened from.
const LEAVE = "Leave the routes without saving? Your changes are lost.";
const LEAVE_TEMPLATE = "Leave the template without saving? Your changes are lost.";
const LEAVE_ALERT = "Leave the alert without saving? Your changes are lost.";
function onHashChange(event) {
  const hash = window.location.hash;
  if (hash && hash !== "#tenants" && hash !== "#routes" && hash !== "#alerts" && !hash.startsWith("#tenant=")
    && !isTemplates(hash) && !isReview(hash)) return;
  const old = new URL(event.oldURL).hash;
  if (shown.view === "alerts" && old !== hash && alerts.unsaved() && !window.confirm(LEAVE_ALERT)) {
    window.history.pushState(null, "", old);  // staying: the alert's form is still open
    return;
  }
  if (shown.view === "templates" && old !== hash && templates.unsaved() && !window.confirm(LEAVE_TEMPLATE)) {
    window.history.pushState(null, "", old);  // staying: the template's address is the newest entry again
    return;
  }
  if (shown.view === "routes" && hash !== "#routes") {
    if (routes.unsaved() && !window.confirm(LEAVE)) {
      window.history.pushState(null, "", "#routes");
      return;
    }
    routes.reset();
  }
  if (hash === "#routes" || hash === "#alerts" || (isTemplates(hash) && shown.view !== "templates")
    || (isReview(hash) && shown.view !== "review")) {
    const before = new URL(event.oldURL).hash;
    back = before && before !== "#routes" && before !== "#alerts" && !isTemplates(before) && !isReview(before)
      ? before : "#";
  }
  notice([]);
  $("error").hidden = true;
  route(true);
}

// The Routes view's "Back to the page": to the view it was opened from, or the page itself (never a bare "#").
function leaveRoutes(event) {
  event.preventDefault();
  if (routes.unsaved() && !window.confirm(LEAVE)) return;
  if (templates.unsaved() && !window.confirm(LEAVE_TEMPLATE)) return;
  if (alerts.unsaved() && !window.confirm(LEAVE_ALERT)) return;
  routes.reset();
  const to = back && back !== "#" ? back : window.location.pathname;
  window.history.pushState(null, "", to);
  notice([]);
  $("error").hidden = true;
  route(true);
}

// While a queued refresh runs: the overview is drawn again (unless the admin is in its table), any other view reads
// only the progress; when it ends, the view is read again.
async function followRefresh() {
  await tenants.load();  // a failure is tried again a little later (refreshing.js)
  if (shown.view === "overview" && !tenants.inTable()) tenants.render();
}

export function wire() {
  progress.wire(followRefresh, () => (AWAY.includes(shown.view) ? Promise.resolve()
    : refreshAll()));
  window.addEventListener("hashchange", onHashChange);
  $("routes-back").addEventListener("click", leaveRoutes);
  $("templates-back").addEventListener("click", leaveRoutes);
  $("alerts-back").addEventListener("click", leaveRoutes);
  $("review-back").addEventListener("click", leaveRoutes);
  window.addEventListener("beforeunload", (event) => {
    if (routes.unsaved() || templates.unsaved() || alerts.unsaved()) event.preventDefault();  // the browser asks before the changes are lost
  });
}
