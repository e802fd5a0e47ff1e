// The security center page, its entry module: a client of the connector's public API (/api/me, /api/provisioning,
// /api/connections, /api/recommendations, /api/tickets, /api/tenants and a tenant's review, /api/routes,
// /api/templates, /api/alerts), nothing else. Every piece of text is set as text, never as HTML (dom.js). With one
// Microsoft tenant it is one page; with several, an overview (tenants.js) and each tenant's own view (view.js decides
// which). The cards are actions.js, tickets.js and connections.js; the create dialog is ticket-dialog.js; the Routes
// view (#routes: where each ticket goes) routes.js; the Templates view (#templates: one decision for many tenants'
// controls) templates.js; the Alerts view (#alerts: a falling score becomes a ticket) alerts.js; a tenant's review
// (#review/{tenant}: its quarter in charts, printable) review.js.
import * as actions from "./actions.js";
import * as alerts from "./alerts.js";
import { SIGN_IN, api } from "./api.js";
import * as connections from "./connections.js";
import { $, el, notice } from "./dom.js";
import { act, showError } from "./problems.js";
import * as progress from "./refreshing.js";
import * as review from "./review.js";
import { ADMIN, CREATE, can, grant } from "./roles.js";
import * as routes from "./routes.js";
import * as templates from "./templates.js";
import * as ticketDialog from "./ticket-dialog.js";
import * as tenants from "./tenants.js";
import * as tickets from "./tickets.js";
import * as view from "./view.js";
import { refreshWords } from "./words.js";

// Who is signed in, and what they may do.
async function loadMe() {
  const me = await api("/api/me");
  grant(me.roles);
  const labels = [can(ADMIN) ? "admin" : null, can(CREATE) ? "can create tickets" : null].filter(Boolean);
  $("who").textContent = `Signed in as ${me.user || "a local user"}` + (labels.length ? ` (${labels.join(", ")})` : " (read only)");
}

async function start() {
  actions.wire();
  ticketDialog.wire();
  tickets.wire();
  $("refresh").addEventListener("click", () => act($("refresh"), async () => {
    const result = await api("/api/recommendations/refresh", { method: "POST" });
    if (result.status === "queued") {  // 202: queued per tenant; the progress shows until each has its outcome
      notice(progress.queuedWords(result));
      await tenants.load();
      return;
    }
    notice(`Secure Score is read${refreshWords(result)}`);
    await view.refreshAll();
  }));
  tenants.wire(async (hash) => {
    if (hash && window.location.hash !== `#${hash}`) window.history.replaceState(null, "", `#${hash}`);
    await view.route();
  });
  connections.wire(view.refreshAll);
  routes.wire();
  templates.wire();
  alerts.wire();
  review.wire();
  view.wire();
  try {
    await loadMe();
  } catch (error) {
    showError($("error"), error);
    if (error.status === 401) $("error").append(el("a", { href: SIGN_IN }, " Sign in"));
    return;
  }
  const known = routes.load().catch(() => {});  // the link's count, and the create dialog's default priority
  await view.route();
  await known;
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
