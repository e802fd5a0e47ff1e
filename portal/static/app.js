// The security center page: a client of the connector's public API (/api/me, /api/provisioning, /api/connections,
// /api/recommendations, /api/tickets, /api/tenants), nothing else. Every piece of text is set as text, never as HTML.
// With one Microsoft tenant it is one page; with several, an overview (tenants.js) and each tenant's own view. The
// ServiceNow connections card is connections.js; the Routes view (#routes: where each ticket goes) is routes.js.
"use strict";

(() => {
  const ADMIN = "Connector.Admin";
  const CREATE = "Tickets.Create";
  const STATUS = { pending: "Pending", new: "New", in_progress: "In progress", on_hold: "On hold",
    resolved: "Resolved", closed: "Closed", canceled: "Canceled", unknown: "Unknown", missing: "Missing" };
  const STATE = { Default: "To address", Ignored: "Risk accepted", ThirdParty: "Resolved through third party",
    Reviewed: "Reviewed" };
  const page = { roles: new Set(), actions: [], rows: [], selected: new Set(), keys: new Map(), showUnscored: false,
    view: "single", tenant: null, overdueOnly: false, back: "#" };  // tenant: null on the one-tenant page, else "home" or an id
  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(problem, status) {
      super((problem && problem.detail) || `The connector answered ${status}.`);
      this.problem = problem || { title: "Request failed", detail: this.message };
      this.status = status;
    }
  }

  // A 401 sends the browser once to App Service Authentication's own sign-in, which comes back to this page. A
  // second 401 right after it shows the error (with a Sign in link) instead of looping: the marker lives in this
  // tab's sessionStorage until a request succeeds. Without storage, no redirect: a loop could not be ruled out.
  const SIGN_IN = "/.auth/login/aad?post_login_redirect_uri=/api/portal";
  const SIGN_IN_MARK = "connector.signInRedirected";
  function signInOnce() {
    try {
      if (window.sessionStorage.getItem(SIGN_IN_MARK)) return false;
      window.sessionStorage.setItem(SIGN_IN_MARK, String(Date.now()));
    } catch {
      return false;
    }
    window.location.assign(SIGN_IN);
    return true;
  }
  function signedIn() {
    try { window.sessionStorage.removeItem(SIGN_IN_MARK); } catch { /* no storage, no marker */ }
  }

  // One request to the API; an expired sign-in is renewed once through App Service Authentication.
  async function api(path, options = {}, renewed = false) {
    const headers = { Accept: "application/json", "X-Requested-With": "XMLHttpRequest", ...(options.headers || {}) };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, { method: options.method || "GET", headers, credentials: "same-origin",
        body: options.body === undefined ? undefined : JSON.stringify(options.body) });
    } catch (failure) {
      throw new ApiError({ title: "The connector cannot be reached", detail: String(failure),
        remediation: "Check your network and reload the page." }, 0);
    }
    if (response.status === 204) return null;
    let data = null;
    try { data = await response.json(); } catch { data = null; }
    if (response.ok) { signedIn(); return data; }
    if (response.status === 401 && !renewed && data && data.reason === "token_expired") {
      const refreshed = await fetch("/.auth/refresh", { credentials: "same-origin",
        headers: { "X-Requested-With": "XMLHttpRequest" } });
      if (refreshed.ok) return api(path, options, true);
    }
    if (response.status === 401 && signInOnce()) return new Promise(() => {}); // the browser is leaving
    throw new ApiError(data, response.status);
  }

  // Elements are built with text only: a title from Graph or ServiceNow can never become markup.
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "className") node.className = value;
      else if (name === "href") node.setAttribute("href", safeHref(value));
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function safeHref(value) {
    const text = String(value);
    return text.startsWith("https://") || text.startsWith("http://127.0.0.1") || text.startsWith("http://localhost")
      || text.startsWith("/") || text.startsWith("#") ? text : "#";
  }

  function problemNodes(error) {
    const problem = error.problem || {};
    return [el("strong", {}, problem.title || "Something went wrong"), " ", problem.detail || error.message,
      problem.remediation ? el("span", { className: "fix" }, `What to do: ${advice(problem.remediation)}`) : null];
  }

  // Connecting is an admin's step: a reader is told who can take it, not to open a route they are refused.
  function advice(remediation) {
    if (can(ADMIN) || !remediation.includes("/api/connect")) return remediation;
    return "Only an admin of the connector (app role Connector.Admin) can connect it to ServiceNow: "
      + "ask one to open this page and press Connect or Reconnect.";
  }

  function showError(target, error) {
    target.replaceChildren(...problemNodes(error));
    target.hidden = false;
  }

  // A form's problems in the connector's own words: under each field a validation_failed answer names (its input
  // marked invalid, the first one focused), anything else in the form's banner with its remediation. `fields` maps
  // a field to how a sentence names it; its input is `${prefix}${field}`, its message `${prefix}${field}-error`.
  function formErrors(prefix, fields, banner) {
    const show = (field, message) => {
      const text = String(message || "is not valid").replace(/\.$/, "");
      const shown = $(`${prefix}${field}-error`);
      shown.textContent = /^(is|must|are|has) /.test(text) ? `${fields[field]} ${text}.`
        : `${text.charAt(0).toUpperCase()}${text.slice(1)}.`;
      shown.hidden = false;
      $(`${prefix}${field}`).setAttribute("aria-invalid", "true");
    };
    const clear = () => {
      for (const field of Object.keys(fields)) {
        $(`${prefix}${field}-error`).hidden = true;
        $(`${prefix}${field}`).removeAttribute("aria-invalid");
      }
      $(banner).hidden = true;
    };
    const answer = (error) => {
      const problem = error.problem || {};
      const errors = Array.isArray(problem.errors) ? problem.errors : [];
      const byField = errors.filter((e) => e && Object.hasOwn(fields, e.field));
      for (const found of byField) show(found.field, found.message);
      if (byField.length && byField.length === errors.length) $(`${prefix}${byField[0].field}`).focus();
      else showError($(banner), error);
    };
    return { show, clear, answer };
  }

  // What an action did, in a live region: read out, and kept on the page until the next one.
  function notice(content) {
    $("notice").replaceChildren(...(Array.isArray(content) ? content : [content]).filter((c) => c !== null));
  }

  // The tenant whose data the cards and actions show: no parameter at all on the one-tenant page.
  const scope = () => (page.tenant ? `&tenant=${encodeURIComponent(page.tenant)}` : "");

  const can = (role) => page.roles.has(role);

  // -- who is signed in -----------------------------------------------------------------------------------------
  async function loadMe() {
    const me = await api("/api/me");
    page.roles = new Set(me.roles || []);
    const labels = [can(ADMIN) ? "admin" : null, can(CREATE) ? "can create tickets" : null].filter(Boolean);
    $("who").textContent = `Signed in as ${me.user || "a local user"}` + (labels.length ? ` (${labels.join(", ")})` : " (read only)");
  }

  // -- the ServiceNow connections (connections.js) and the routes (routes.js) --------------------------------------
  let connections = null;
  let routes = null;
  const loadConnection = () => connections.load();

  // -- Secure Score -----------------------------------------------------------------------------------------------
  function drawTrend(history) {
    const svg = $("trend");
    const title = $("trend-title");
    svg.replaceChildren(title);
    const points = history.filter((h) => typeof h.current === "number");
    if (points.length < 2) { title.textContent = "No Secure Score history yet"; return; }
    const top = Math.max(...points.map((h) => h.max || h.current), 1);
    const x = (i) => (i / (points.length - 1)) * 300;
    const y = (v) => 78 - (v / top) * 74;
    const line = points.map((h, i) => `${x(i).toFixed(1)},${y(h.current).toFixed(1)}`).join(" ");
    const ns = "http://www.w3.org/2000/svg";
    const area = document.createElementNS(ns, "polygon");
    area.setAttribute("class", "area");
    area.setAttribute("points", `0,80 ${line} 300,80`);
    const stroke = document.createElementNS(ns, "polyline");
    stroke.setAttribute("points", line);
    svg.append(area, stroke);
    const first = points[0], last = points[points.length - 1];
    title.textContent = `Secure Score from ${first.current} on ${first.date} to ${last.current} on ${last.date}, `
      + `out of ${last.max}`;
    $("trend-caption").textContent = `${first.date} to ${last.date}`;
  }

  async function loadActions() {
    const tbody = $("recommendations").tBodies[0];
    const asked = page.tenant;
    try {
      const list = await api(`/api/recommendations?status=all${scope()}`);
      if (asked !== page.tenant) return;  // another tenant was chosen meanwhile
      const score = list.secureScore;
      $("score-value").textContent = score && score.current !== null ? String(score.current) : "–";
      $("score-max").textContent = score && score.max ? `of ${score.max} (${score.percent}%)` : "not read yet";
      $("refreshed").textContent = list.refreshedAt ? `Read from Secure Score ${when(list.refreshedAt)}` : "";
      $("refresh").hidden = !can(ADMIN);
      drawTrend(list.history || []);
      page.actions = list.recommendations;
      page.unscored = page.actions.filter((a) => a.scored === false).length;
      renderActions(tbody);
    } catch (error) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 7 }, ...problemNodes(error))));
      $("score-max").textContent = "not available";
    }
  }

  function stateLabel(action) {
    if (action.scored === false) return ["Not scored", ""];  // not applicable to this tenant's licences
    if (action.completed) return ["Completed", "done"];
    if (action.deprecated) return ["Deprecated", ""];
    return [STATE[action.state] || action.state, "open"];
  }

  // All rows are built once; filters only hide and show them, so hundreds of actions stay fast.
  function renderActions(tbody) {
    const creator = can(CREATE);
    const fragment = document.createDocumentFragment();
    page.rows = page.actions.map((action) => {
      const [label, tone] = stateLabel(action);
      const ticket = action.ticket;
      const box = el("input", { type: "checkbox", "aria-label": `Select ${action.title}`, "data-id": action.id });
      box.addEventListener("change", () => select(action.id, box.checked));
      const about = [action.id, action.service].filter(Boolean).join(" · ");
      // data-label names each cell where the phone layout stacks a row (app.css).
      const row = el("tr", {},
        el("td", { className: "pick" }, creator ? box : null),
        el("td", { className: "num rank", "data-label": "Rank" }, action.rank ?? ""),
        el("td", { className: "action" }, el("span", { className: "title" }, action.title),
          el("span", { className: "sub" }, about)),
        el("td", { className: "category", "data-label": "Category" }, action.category || ""),
        el("td", { className: "num points", "data-label": "Points" },
          `${action.score ?? "–"} / ${action.maxScore ?? "–"}`),
        el("td", { className: "action-state", "data-label": "State" }, el("span", { className: `status ${tone}` }, label)),
        el("td", { className: "ticket", "data-label": "Ticket" }, ticket ? ticketLink(ticket) : "–"));
      fragment.append(row);
      return { action, row };
    });
    tbody.replaceChildren(fragment);
    $("create").hidden = !creator;
    applyFilters();
  }

  function ticketLink(ticket) {
    const status = STATUS[ticket.status] || ticket.status;
    return el("span", {}, ticketNumber(ticket),
      el("span", { className: "sub" }, status + (ticket.assignedTo ? ` · ${ticket.assignedTo}` : "")));
  }

  // A number is one unbroken word (up to 40 characters): cut to the column with the whole number in its title.
  function ticketNumber(ticket) {
    const name = ticket.number || "pending";
    const props = { className: "number", title: name };
    return ticket.url ? el("a", { ...props, href: ticket.url, target: "_blank", rel: "noopener noreferrer" }, name)
      : el("span", props, name);
  }

  function applyFilters() {
    const category = $("f-category").value;
    const status = $("f-status").value;
    const ticket = $("f-ticket").value;
    const text = $("f-text").value.trim().toLowerCase();
    let shown = 0;
    for (const { action, row } of page.rows) {
      const scored = action.scored !== false;
      const visible = (scored || page.showUnscored)
        && (!category || action.category === category)
        && (status === "all" || (scored && (status === "completed") === Boolean(action.completed)))
        && (status !== "open" || !action.deprecated)
        && (ticket === "any" || (ticket === "with") === Boolean(action.ticket))
        && (!text || action.title.toLowerCase().includes(text) || action.id.toLowerCase().includes(text));
      row.hidden = !visible;
      if (visible) shown += 1;
    }
    // Out of what is listed: the scored actions, and the others only once the admin asks for them.
    const listed = page.showUnscored ? page.rows.length : page.rows.length - (page.unscored || 0);
    $("shown").textContent = `${shown} of ${listed} shown`;
    // Controls this tenant's snapshot does not score do not apply to it: hidden unless the admin asks for them.
    const toggle = $("unscored");
    toggle.hidden = !page.unscored;
    toggle.setAttribute("aria-pressed", String(page.showUnscored));
    toggle.textContent = page.showUnscored ? `Hide the ${page.unscored} not scored`
      : `Show ${page.unscored} not scored for this tenant`;
  }

  function select(id, on) {
    if (on) page.selected.add(id); else page.selected.delete(id);
    const count = page.selected.size;
    $("create").disabled = count === 0;
    $("create").textContent = count > 1 ? `Create ${count} tickets` : "Create ticket";
    $("selected").textContent = count ? `${count} selected` : "";
  }

  // -- ServiceNow card ----------------------------------------------------------------------------------------------
  // With several ServiceNow instances each ticket says which one its record lives on. The overdue count (open and
  // past its due date) is a toggle: pressed, the table lists those only (GET /api/tickets?status=overdue).
  async function loadTickets() {
    const tbody = $("tickets").tBodies[0];
    const asked = page.tenant;
    try {
      const [card, known] = await Promise.all([
        api(`/api/tickets?status=${page.overdueOnly ? "overdue" : "all"}${scope()}`), connections.listed()]);
      if (asked !== page.tenant) return;
      const { overdue = 0, ...statuses } = card.summary;
      if (page.overdueOnly && !overdue) { page.overdueOnly = false; return loadTickets(); }
      $("counts").replaceChildren(...Object.entries(statuses).filter(([, n]) => n > 0)
        .map(([status, n]) => el("li", {}, el("strong", {}, n), STATUS[status] || status)));
      if (!$("counts").children.length) $("counts").append(el("li", {}, "No tickets yet"));
      $("overdue").hidden = !overdue;
      $("overdue").setAttribute("aria-pressed", String(page.overdueOnly));
      $("overdue").replaceChildren(el("strong", {}, overdue), " overdue",
        el("span", { className: "visually-hidden" }, " (show only these)"));
      $("tickets-caption").textContent = page.overdueOnly ? "Overdue tickets, newest first" : "Tickets, newest first";
      // A ticket on a connection removed since still lives on another instance than the default's.
      const several = known.length > 1 || card.tickets.some((t) => t.connection && t.connection !== "default");
      const sync = card.lastSync;
      $("last-sync").textContent = known.length > 1 ? connections.syncSummary(known) : !sync ? "The status sync has not run yet."
        : sync.status === "failed" ? `Status sync ${when(sync.at)} failed: the connection card says why and what to do.`
          : `Status sync ${when(sync.at)}: ${sync.status}, ${sync.changed} changed`;
      $("where-head").hidden = !several;
      $("tickets").closest(".scroll").hidden = card.tickets.length === 0;
      tbody.replaceChildren(...card.tickets.slice(0, 200).map((t) => el("tr", {},
        el("td", { className: "num" }, ticketNumber(t)),
        el("td", { className: "name" }, t.name, dueLine(t),
          t.secureScore && t.secureScore.refused ? el("span", { className: "sub note" },
            "Secure Score does not accept notes for this control") : null),
        el("td", {}, el("span", { className: "status" }, STATUS[t.status] || t.status)),
        el("td", { className: "assigned" }, t.assignedTo || ""),
        several ? el("td", { className: "where", "data-label": "Connection" }, t.connection || "default") : null)));
    } catch (error) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 5 }, ...problemNodes(error))));
    }
  }

  // A due date, and past it (open and overdue, as the connector counts it) in words and colour, not colour alone.
  function dueLine(ticket) {
    const due = routes.dueNote(ticket);
    if (!due) return null;
    return ticket.overdue ? el("span", { className: "sub due overdue" }, `Overdue: ${due.charAt(0).toLowerCase()}${due.slice(1)}`)
      : el("span", { className: "sub due" }, due);
  }

  function when(iso) {
    const moment = new Date(iso);
    return Number.isNaN(moment.getTime()) ? iso : moment.toLocaleString();
  }

  // -- the create dialog (the original share flow: priority, due date, editable name and description) ---------------
  function openDialog() {
    const chosen = page.actions.filter((a) => page.selected.has(a.id));
    if (!chosen.length) return;
    const single = chosen.length === 1;
    $("dialog-title").textContent = single ? "Create a ServiceNow ticket" : `Create ${chosen.length} ServiceNow tickets`;
    $("dialog-what").textContent = single ? `For "${chosen[0].title}" (${chosen[0].id}).`
      : `One ticket each for: ${chosen.map((a) => a.title).join("; ")}.`;
    $("single-fields").hidden = !single;
    $("t-name").required = single;
    if (single) {
      $("t-name").value = chosen[0].title.slice(0, 160);
      $("t-description").value = (chosen[0].remediation || "").slice(0, 4000);
    }
    for (const action of chosen) if (!page.keys.has(action.id)) page.keys.set(action.id, crypto.randomUUID());
    const routed = routes.exist();  // with routes, a rule's priority and due date apply by default
    $("t-priority").value = routed ? "" : "medium";
    $("t-priority").options[0].hidden = !routed;
    for (const [field, hint] of [["t-priority", "t-priority-hint"], ["t-due", "t-due-hint"]]) {
      $(hint).hidden = !routed;  // and not read out either: a hidden node named by aria-describedby still is
      if (routed) $(field).setAttribute("aria-describedby", hint); else $(field).removeAttribute("aria-describedby");
    }
    $("t-due").min = today();  // the date picker offers no past day; a typed one is said below the field
    pastDue();
    $("dialog-error").hidden = true;
    $("submit").disabled = false;
    $("dialog").showModal();
    if (single) {  // a long name opens at its start, not scrolled to its end
      $("t-name").focus();
      $("t-name").setSelectionRange(0, 0);
      $("t-name").scrollLeft = 0;
    } else {
      $("t-priority").focus();
    }
  }

  // Today in the admin's own time zone, as the date field gives its value (YYYY-MM-DD).
  function today() {
    const now = new Date();
    return [now.getFullYear(), now.getMonth() + 1, now.getDate()].map((n) => String(n).padStart(2, "0")).join("-");
  }

  // A due date before today would make the ticket overdue the moment it exists: said under the field, not sent.
  function pastDue() {
    const field = $("t-due");
    const past = Boolean(field.value) && field.value < today();
    const shown = $("t-due-error");
    shown.textContent = past ? `The due date ${field.value} is in the past: the ticket would be overdue at once. `
      + "Choose today or a later date, or none." : "";
    shown.hidden = !past;
    const described = (field.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && id !== "t-due-error");
    if (past) described.push("t-due-error");
    if (described.length) field.setAttribute("aria-describedby", described.join(" "));
    else field.removeAttribute("aria-describedby");
    if (past) field.setAttribute("aria-invalid", "true"); else field.removeAttribute("aria-invalid");
    return past;
  }

  async function submitDialog(event) {
    event.preventDefault();
    const chosen = page.actions.filter((a) => page.selected.has(a.id));
    const single = chosen.length === 1;
    if (single && !$("t-name").value.trim()) {
      showError($("dialog-error"), new ApiError({ title: "Name required", detail: "Give the ticket a name." }, 400));
      $("t-name").focus();
      return;
    }
    if (pastDue()) {
      $("t-due").focus();
      return;
    }
    $("submit").disabled = true;
    const failures = [];
    for (const action of chosen) {
      const body = { recommendation: { id: action.id } };
      if ($("t-priority").value) body.priority = $("t-priority").value;  // none: as the routes say
      if (page.tenant && page.tenant !== "home") body.tenant = page.tenant;
      if ($("t-due").value) body.dueDate = $("t-due").value;
      if (single) {
        body.name = $("t-name").value.trim();
        if ($("t-description").value.trim()) body.description = $("t-description").value;
      }
      try {
        // One Idempotency-Key per action per dialog: pressing Create twice never makes two records.
        await api("/api/tickets", { method: "POST", body, headers: { "Idempotency-Key": page.keys.get(action.id) } });
        page.selected.delete(action.id);
        page.keys.delete(action.id);
      } catch (error) {
        failures.push([action, error]);
      }
    }
    if (failures.length) {
      $("dialog-error").replaceChildren(...failures.map(([action, error]) =>
        el("p", {}, el("strong", {}, `${action.title}: `), ...problemNodes(error))));
      $("dialog-error").hidden = false;
      $("submit").disabled = false;
      return;
    }
    $("dialog").close();
    select("", false);
    await refreshAll();
  }

  // -- admin actions --------------------------------------------------------------------------------------------------
  // One button's action: the button off while it runs, its problem shown in the page's error banner (or `shown`).
  async function act(button, run, shown = $("error")) {
    button.disabled = true;
    shown.hidden = true;
    try { await run(); } catch (error) { showError(shown, error); } finally { button.disabled = false; }
  }

  const adminAction = (button, run) => act(button, async () => { await run(); await refreshAll(); });

  // What a refresh from Secure Score did to the tickets, in words: resolved, reopened, new, notes written.
  function refreshWords(result) {
    const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
    const done = [
      result.resolved ? `${count(result.resolved, "ticket", "tickets")} resolved (their improvement actions are completed)` : null,
      result.reopened ? `${count(result.reopened, "ticket", "tickets")} reopened (regressed)` : null,
      result.recreated ? `${count(result.recreated, "new ticket", "new tickets")} for regressed actions` : null,
      result.written ? `${count(result.written, "note", "notes")} written to Secure Score` : null].filter(Boolean);
    return done.length ? `: ${done.join(", ")}.` : "; no ticket changed.";
  }

  async function refreshAll() {
    const connection = loadConnection();  // first: the tickets card waits for its list of connections
    const parts = page.view === "overview" ? [tenants.reload()] : [loadActions(), loadTickets()];
    await Promise.allSettled([connection, ...parts]);
    if (page.view !== "overview") showTenantChecks();
  }

  // What needs attention in the tenant shown (its Secure Score, consent, notes): on its own Secure Score card, never
  // on the ServiceNow card. Checks without a tenant are this organization's.
  function showTenantChecks() {
    const home = !page.tenant || page.tenant === "home";
    const homeRow = tenants.find("home");
    const mine = connections.tenantChecks().filter((c) => !c.ok && (c.tenant
      ? c.tenant === page.tenant || (home && homeRow && c.tenant === homeRow.id) : home));
    $("score-checks").replaceChildren(...mine.map((c) => el("li", {}, el("strong", {}, c.name.replaceAll("_", " ")),
      ": ", c.detail, c.remediation ? el("span", { className: "fix" }, `What to do: ${c.remediation}`) : null)));
  }

  // -- the view: the one-tenant page, the tenant overview, or one tenant's page (#tenant=<id>, kept on reload) -------
  let tenants = null;
  const TITLE = document.title;

  function wantedTenant() {
    const hash = window.location.hash;
    if (!hash.startsWith("#tenant=")) return null;
    try { return decodeURIComponent(hash.slice("#tenant=".length)); } catch { return hash.slice("#tenant=".length); }
  }

  async function route(moved = false) {
    if (window.location.hash === "#routes") {
      page.view = "routes";
      layout(null);
      await routes.open(page.back);
      document.body.dataset.view = page.view;
      if (moved) $("routes-title").focus();
      return;
    }
    try {
      await tenants.load();
    } catch (error) {
      showError($("error"), error);  // the page of the home tenant, as it was before tenants
    }
    const several = tenants.several();
    const wanted = several ? wantedTenant() : null;
    // One tenant: its page has no address of its own (a simulator's link back names #tenant=home).
    if (!several && wantedTenant() !== null) window.history.replaceState(null, "", window.location.pathname);
    const row = wanted ? tenants.find(wanted) : null;
    if (wanted && !row) notice(`The connector reads no tenant "${wanted}": here are the ones it reads.`);
    const chosen = row ? tenants.key(row) : null;
    if (chosen !== page.tenant) {
      page.overdueOnly = false;
      page.selected.clear();
      select("", false);
    }
    page.view = !several ? "single" : row ? "tenant" : "overview";
    page.tenant = chosen;
    layout(row);
    if (page.view === "overview") {
      tenants.render();
      await loadConnection();
    } else {
      await refreshAll();
    }
    document.body.dataset.view = page.view;
    document.body.dataset.tenant = page.tenant || "";
    if (moved) $(page.view === "tenant" ? "tenant-title" : "tenants-title").focus();
  }

  function layout(row) {
    const overview = page.view === "overview";
    const away = page.view === "routes";  // the Routes view alone
    $("routes").hidden = !away;
    $("connection").parentElement.hidden = away;
    $("tenants").hidden = !overview;
    for (const id of ["score", "servicenow", "actions"]) $(id).hidden = overview || away;
    $("connection").parentElement.classList.toggle("alone", overview);  // under the overview, the whole width
    $("tenant-bar").hidden = page.view !== "tenant";
    $("add-first").hidden = !(page.view === "single" && can(ADMIN));
    $("skip").setAttribute("href", away ? "#routes" : overview ? "#tenants" : "#actions");
    $("skip").textContent = away ? "Skip to the routes" : overview ? "Skip to the tenants"
      : "Skip to the improvement actions";
    if (row) {
      $("tenant-title").textContent = row.name;
      $("tenant-about").textContent = tenants.describe(row);
    }
    document.title = page.view === "single" ? TITLE : `${away ? "Routes" : overview ? "Tenants" : row.name} – ${TITLE}`;
  }

  // Only the view's own addresses choose the view: a skip link's #actions stays where it is. Leaving the Routes view
  // with unsaved changes asks first; staying puts the Routes view's address back as the newest entry, so the address
  // bar says where the admin is and the next Back asks again (never the browser's own leave-the-page prompt). The
  // Routes view's Back leads where it was opened from.
  const LEAVE = "Leave the routes without saving? Your changes are lost.";
  function onHashChange(event) {
    const hash = window.location.hash;
    if (hash && hash !== "#tenants" && hash !== "#routes" && !hash.startsWith("#tenant=")) return;
    if (page.view === "routes" && hash !== "#routes") {
      if (routes.unsaved() && !window.confirm(LEAVE)) {
        window.history.pushState(null, "", "#routes");
        return;
      }
      routes.reset();
    }
    if (hash === "#routes") {
      const before = new URL(event.oldURL).hash;
      page.back = before && before !== "#routes" ? before : "#";
    }
    notice([]);
    $("error").hidden = true;
    route(true);
  }

  // The Routes view's "Back to the page": to the view it was opened from, or the page itself (never a bare "#").
  function leaveRoutes(event) {
    event.preventDefault();
    if (routes.unsaved() && !window.confirm(LEAVE)) return;
    routes.reset();
    const back = page.back && page.back !== "#" ? page.back : window.location.pathname;
    window.history.pushState(null, "", back);
    notice([]);
    $("error").hidden = true;
    route(true);
  }

  async function start() {
    for (const id of ["f-category", "f-status", "f-ticket"]) $(id).addEventListener("change", applyFilters);
    $("f-text").addEventListener("input", applyFilters);
    $("unscored").addEventListener("click", () => { page.showUnscored = !page.showUnscored; applyFilters(); });
    $("filters").addEventListener("submit", (event) => event.preventDefault());
    $("create").addEventListener("click", openDialog);
    $("cancel").addEventListener("click", () => $("dialog").close());
    $("dialog").addEventListener("close", () => $("create").focus());
    $("ticket-form").addEventListener("submit", submitDialog);
    $("t-due").addEventListener("change", pastDue);
    $("overdue").addEventListener("click", () => { page.overdueOnly = !page.overdueOnly; loadTickets(); });
    $("refresh").addEventListener("click", () => adminAction($("refresh"), async () => {
      const result = await api("/api/recommendations/refresh", { method: "POST" });
      notice(`Secure Score is read${refreshWords(result)}`);
    }));
    tenants = window.SecurityCenterTenants({ $, api, el, when, can, ADMIN, problemNodes, showError, notice,
      act, formErrors, refreshWords });
    tenants.wire(async (hash) => {
      if (hash && window.location.hash !== `#${hash}`) window.history.replaceState(null, "", `#${hash}`);
      await route();
    });
    connections = window.SecurityCenterConnections({ $, api, el, when, can, ADMIN, problemNodes, notice, act,
      advice, formErrors });
    connections.wire(refreshAll);
    routes = window.SecurityCenterRoutes({ $, api, el, when, can, ADMIN, problemNodes, showError, notice });
    routes.wire();
    window.addEventListener("hashchange", onHashChange);
    $("routes-back").addEventListener("click", leaveRoutes);
    window.addEventListener("beforeunload", (event) => {
      if (routes.unsaved()) event.preventDefault();  // the browser asks before the changes are lost
    });
    try {
      await loadMe();
    } catch (error) {
      showError($("error"), error);
      if (error.status === 401) $("error").append(el("a", { href: SIGN_IN }, " Sign in"));
      return;
    }
    const known = routes.load().catch(() => {});  // the link's count, and the create dialog's default priority
    await route();
    await known;
    document.body.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", start);
})();
