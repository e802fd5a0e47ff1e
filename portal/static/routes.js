// The Routes view (docs/design.md#connections-and-routes): the ordered rules of GET /api/routes, the first match
// deciding where each recommendation's ticket goes, read by everyone. Admins edit a draft of the list on the page (add,
// edit, move, delete), preview it (POST /api/routes/preview) and save it (PUT /api/routes with If-Match: the version
// read). Nothing is saved until Save succeeds; a save over someone else's is refused (412) and offers theirs; a problem
// the connector names (routes[3].set.dueInDays) shows on that rule and, in its editor, under that field.
"use strict";

window.SecurityCenterRoutes = (core) => {
  const { $, api, el, when, can, ADMIN, problemNodes, showError, notice } = core;
  const CATEGORIES = ["Identity", "Data", "Device", "Apps", "Infrastructure"];
  const PRIORITIES = ["critical", "high", "medium", "low", "planning"];
  const MATCH = ["tenants", "categories", "services", "minPoints", "controls"];
  const SET = ["connection", "table", "assignmentGroup", "company", "priority", "dueInDays", "fields"];
  // How a sentence names each member of a rule (a problem names one), and one item of a list member.
  const LABELS = { name: "The name", tenants: "Tenants", categories: "Categories", services: "Services",
    minPoints: "Minimum points", controls: "Control id patterns", connection: "The connection", table: "The table",
    assignmentGroup: "The assignment group", company: "The company", priority: "The priority",
    dueInDays: "Due in days", fields: "Extra fields" };
  const ITEM = { tenants: "Tenant", categories: "Category", services: "Service", controls: "Control id pattern",
    fields: "Field" };
  const BEFORE = "the default connection, its table, no assignment group, company or due date";
  const state = { version: null, saved: [], savedAt: null, savedBy: null, draft: [], loaded: false, next: 1,
    tenants: [], connections: null, services: null, editing: null, preview: null, previewedAs: null, back: "#" };

  // -- the list: the saved rules, and the draft an admin changes ---------------------------------------------------
  const entry = (rule) => ({ key: state.next++, rule, errors: [] });
  const rules = () => state.draft.map((e) => e.rule);
  const exist = () => !state.loaded || state.saved.length > 0;  // unread: there may be some, so say nothing either way

  // Two lists are the same when their rules say the same (members in any order; an empty match is no match; a
  // match's lists are sets: the editor's boxes give categories in their own order, an API client in any).
  function canonical(value, unordered = false) {
    if (Array.isArray(value)) return unordered ? [...new Set(value)].sort() : value.map((v) => canonical(v));
    if (!value || typeof value !== "object") return value;
    const kept = Object.keys(value).sort().filter((k) => value[k] !== undefined
      && !(k === "match" && !Object.keys(value[k] || {}).length) && !(k === "fields" && !Object.keys(value[k] || {}).length));
    return Object.fromEntries(kept.map((k) => [k, k === "match" && value[k] && typeof value[k] === "object"
      ? Object.fromEntries(Object.keys(value[k]).sort().map((m) => [m, canonical(value[k][m], true)]))
      : canonical(value[k])]));
  }
  const same = (a, b) => JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
  const unsaved = () => state.loaded && !same(rules(), state.saved);

  // A preview shown stays only when it is of the list taken (the draft just saved); any other is put away.
  function take(answer, previewed = null) {
    state.version = answer.version;
    state.saved = Array.isArray(answer.routes) ? answer.routes : [];
    state.savedAt = answer.savedAt || null;
    state.savedBy = answer.savedBy || null;
    state.draft = state.saved.map((rule) => entry(structuredClone(rule)));
    state.loaded = true;
    state.preview = previewed;
    state.previewedAs = previewed ? structuredClone(state.saved) : null;
    $("routes-preview").hidden = !previewed;
    link();
  }

  async function load() {
    take(await api("/api/routes"));
  }

  // The page's way in (next to the connections): how many rules there are.
  function link() {
    const count = state.saved.length;
    $("routes-link").textContent = `Routes: ${count ? `${count} ${count === 1 ? "rule" : "rules"}` : "none yet"}`;
  }

  // -- in words ------------------------------------------------------------------------------------------------------
  const listed = (items, word = "or") => (items.length > 1
    ? `${items.slice(0, -1).join(", ")} ${word} ${items[items.length - 1]}` : items.join(""));
  const reference = (value) => (value && typeof value === "object" ? value.name || value.sysId : value || "");

  function tenantName(id) {
    const found = state.tenants.find((t) => (t.home ? "home" : t.id) === id || t.id === id);
    const own = !found || /^this organi[sz]ation$/i.test(found.name || "");  // no name of its own to add to
    if (id === "home") return own ? "This organization" : `${found.name} (this organization)`;
    return found ? found.name : id;
  }

  function matchWords(match = {}) {
    const words = [];
    if (match.tenants) words.push(`${match.tenants.length > 1 ? "tenants" : "tenant"} ${listed(match.tenants.map(tenantName))}`);
    if (match.categories) words.push(listed(match.categories));
    if (match.services) words.push(`${match.services.length > 1 ? "services" : "service"} ${listed(match.services)}`);
    if (match.minPoints !== undefined) words.push(`${match.minPoints} points or more`);
    if (match.controls) words.push(`${match.controls.length > 1 ? "controls" : "control"} ${listed(match.controls)}`);
    return words.length ? words.join(", ") : "Everything";
  }

  function setWords(set = {}) {
    const words = [`connection ${set.connection || "default"}`];
    if (set.table) words.push(`table ${set.table}`);
    if (set.assignmentGroup) words.push(`group ${reference(set.assignmentGroup)}`);
    if (set.company) words.push(`company ${reference(set.company)}`);
    if (set.priority !== undefined) words.push(`priority ${set.priority}`);
    if (set.dueInDays !== undefined) words.push(`due in ${set.dueInDays} ${set.dueInDays === 1 ? "day" : "days"}`);
    for (const [name, value] of Object.entries(set.fields || {})) words.push(`${name} = ${value}`);
    return words.join(", ");
  }

  const isCatchAll = (rule) => !Object.keys(rule.match || {}).length;
  const ruleLabel = (rule, i) => `rule ${i + 1}${rule.name ? ` (${rule.name})` : ""}`;

  // On the tickets card: a due date a rule set says so.
  function dueNote(ticket) {
    if (!ticket.dueDate) return null;
    const due = new Date(ticket.dueDate);
    if (Number.isNaN(due.getTime())) return `Due ${ticket.dueDate}`;
    const thisYear = due.getUTCFullYear() === new Date().getUTCFullYear();
    const date = due.toLocaleDateString(undefined, { day: "numeric", month: "short", timeZone: "UTC",
      year: thisYear ? undefined : "numeric" });
    const route = ticket.route;
    const byRule = route && route.set && route.set.dueInDays
      ? ` (by rule: ${route.name || `rule ${route.index + 1}`})` : "";
    return `Due ${date}${byRule}`;
  }

  // -- the view --------------------------------------------------------------------------------------------------------
  async function open(back) {
    if (back !== undefined) state.back = back;
    $("routes-back").setAttribute("href", state.back && state.back !== "#" ? state.back : window.location.pathname);
    const admin = can(ADMIN);
    $("routes-tools").hidden = !admin;
    $("route-add").hidden = !admin;
    $("routes-who").textContent = admin ? "Change the list, preview where tickets would go, then save it: nothing "
      + "changes until you save." : "Only an admin of the connector (app role Connector.Admin) can change them.";
    const tenants = api("/api/tenants").then((answer) => { state.tenants = answer.tenants || []; }, () => {});
    try {
      if (!unsaved()) await load();
    } catch (error) {
      showError($("routes-error"), error);
    }
    await tenants;
    render();
  }

  function render() {
    const admin = can(ADMIN);
    const catchAll = state.draft.findIndex((e) => isCatchAll(e.rule));
    $("rule-list").replaceChildren(...state.draft.map((e, i) => ruleItem(e, i, catchAll, admin)));
    $("rule-list").hidden = !state.draft.length;
    $("rules-rest").textContent = !state.draft.length ? `No rules: every ticket goes as before routes (${BEFORE}).`
      : catchAll < 0 ? `Everything else goes as before routes: ${BEFORE}.` : "";
    $("rules-rest").hidden = !state.loaded || (catchAll >= 0 && state.draft.length > 0);  // unread is not "none"
    $("route-add").hidden = !admin || !state.loaded;  // a list never read could never be saved
    $("routes-saved").textContent = !state.loaded ? "" : state.savedAt
      ? `Saved ${when(state.savedAt)}${state.savedBy ? ` by ${state.savedBy}` : ""}.` : "Never saved.";
    const changed = unsaved();
    $("routes-dirty").hidden = !changed;
    $("routes-save").disabled = !changed;
    $("routes-discard").disabled = !changed;
    $("routes-preview-button").disabled = !state.loaded;
    $("preview-stale").hidden = !state.preview || same(state.previewedAs, rules());
    // Whether what the preview shows is saved: after Save it is the list in force, before it nothing is.
    $("preview-saved").textContent = !state.preview ? "" : same(state.previewedAs, state.saved)
      ? "This is where tickets go now: the list previewed is the one saved." : "Nothing is saved yet: Save keeps this list.";
  }

  function ruleItem(item, i, catchAll, admin) {
    const { rule } = item;
    const savedRule = rule.id ? state.saved.find((r) => r.id === rule.id) : null;
    const tag = !savedRule ? "New" : same(savedRule, rule) ? null : "Changed";
    const line = el("p", { className: "rule-line" }, el("span", { className: "rule-match" }, matchWords(rule.match)),
      el("span", { "aria-hidden": "true" }, " → "), el("span", { className: "visually-hidden" }, ": tickets go to "),
      setWords(rule.set));
    const never = catchAll >= 0 && i > catchAll
      ? el("p", { className: "rule-never" }, `Never used: rule ${catchAll + 1} above matches everything.`) : null;
    const errors = item.errors.length ? el("ul", { className: "rule-errors" },
      ...item.errors.map((e) => el("li", {}, e.text))) : null;
    return el("li", { className: item.errors.length ? "rule invalid" : "rule", "data-key": item.key },
      el("h3", { className: "rule-name" }, `${i + 1}. `, rule.name || "Unnamed rule",
        tag ? el("span", { className: "tag" }, tag) : null),
      line, never, errors, admin ? ruleButtons(item, i) : null);
  }

  // Move up and down stay focusable at the ends (aria-disabled), so focus can follow a rule as it moves. Each name
  // begins with the button's own text (WCAG 2.5.3: a voice user says what they see).
  function ruleButtons(item, i) {
    const label = ruleLabel(item.rule, i);
    const button = (action, text, aria, run, off = false) => {
      const made = el("button", { type: "button", className: action === "delete" ? "button danger" : "button",
        "data-action": action, "aria-label": aria, "aria-disabled": off ? "true" : null }, text);
      made.addEventListener("click", () => { if (!off) run(); });
      return made;
    };
    return el("div", { className: "buttons" },
      button("edit", "Edit", `Edit ${label}`, () => edit(item.key)),
      button("up", "Move up", `Move up ${label}`, () => move(item.key, -1), i === 0),
      button("down", "Move down", `Move down ${label}`, () => move(item.key, 1), i === state.draft.length - 1),
      button("delete", "Delete", `Delete ${label}`, () => remove(item.key)));
  }

  function focusRule(key, action) {
    const found = document.querySelector(`#rule-list li[data-key="${key}"] button[data-action="${action}"]`);
    if (found) found.focus();
  }

  function move(key, step) {
    const from = state.draft.findIndex((e) => e.key === key);
    const to = from + step;
    if (from < 0 || to < 0 || to >= state.draft.length) return;
    const [moved] = state.draft.splice(from, 1);
    state.draft.splice(to, 0, moved);
    render();
    focusRule(key, step < 0 ? "up" : "down");
    notice(`${capital(ruleLabel(moved.rule, to))} is now number ${to + 1} of ${state.draft.length} (not saved yet).`);
  }

  function remove(key) {
    const at = state.draft.findIndex((e) => e.key === key);
    if (at < 0) return;
    const [gone] = state.draft.splice(at, 1);
    render();
    const next = state.draft[at] || state.draft[at - 1];
    if (next) focusRule(next.key, "edit"); else $("route-add").focus();
    notice(`${capital(ruleLabel(gone.rule, at))} is deleted from the list (not saved yet).`);
  }

  const capital = (text) => text.charAt(0).toUpperCase() + text.slice(1);

  // -- problems the connector names: on their rule, and under their field in its editor ----------------------------
  function locate(field) {
    const found = /^routes\[(\d+)\](.*)$/.exec(String(field || ""));
    if (!found) return null;
    const index = Number(found[1]);
    const member = /^\.(match|set)\.([A-Za-z]+)(?:\[(\d+)\]|\.(.*))?$/.exec(found[2]);  // `.fields.`: no name
    if (member && (member[1] === "match" ? MATCH : SET).includes(member[2])) {
      return { index, member: member[2], item: member[3] === undefined ? null : Number(member[3]),
        sub: member[4] === undefined ? null : member[4] };
    }
    return { index, member: found[2] === ".name" ? "name" : null, item: null, sub: null };
  }

  function sentence(subject, message) {
    const text = String(message || "is not valid").replace(/\.$/, "");
    return /^(is|must|are|has|take) /.test(text) ? `${subject} ${text}.` : `${subject}: ${text}.`;
  }

  function errorText(rule, where, message) {
    if (!where.member) return sentence("This rule", message);
    const list = (rule.match || {})[where.member];
    if (where.item !== null && Array.isArray(list)) return sentence(`${ITEM[where.member]} "${list[where.item]}"`, message);
    if (where.member === "fields" && where.sub !== null) {
      return sentence(where.sub ? `${ITEM.fields} "${where.sub}"` : "A field without a name", message);
    }
    return sentence(LABELS[where.member], message);
  }

  // A refused save or preview: each problem on its rule (and its field), the rest in the banner, focus on it.
  function refused(error, what) {
    for (const item of state.draft) item.errors = [];
    const banner = $("routes-error");
    if (error.status === 412 && error.problem && Array.isArray(error.problem.routes)) return stale(error.problem);
    const problems = error.problem && Array.isArray(error.problem.errors) ? error.problem.errors : [];
    if (error.status !== 400 || !problems.length) {
      showError(banner, error);
      banner.focus();
      return;
    }
    const general = [];
    const links = [];
    for (const problem of problems) {
      const where = locate(problem.field);
      const item = where && state.draft[where.index];
      if (!item) { general.push(el("li", {}, sentence(problem.field || "The list", problem.message))); continue; }
      const text = errorText(item.rule, where, problem.message);
      item.errors.push({ member: where.member, text });
      const fix = el("button", { type: "button", className: "linkish" }, `Rule ${where.index + 1}`);
      fix.addEventListener("click", () => edit(item.key, where.member));
      links.push(el("li", {}, fix, `: ${text}`));
    }
    const count = problems.length;
    banner.replaceChildren(el("strong", {}, `${what}: the connector found ${count} ${count === 1 ? "problem" : "problems"}.`),
      links.length ? " Each is shown on its rule; press one to fix it." : null,
      el("ul", { className: "problems" }, ...links, ...general));
    banner.hidden = false;
    render();
    banner.focus();
  }

  // Someone saved meanwhile: nothing of ours was kept. Their list replaces the draft only when asked.
  function stale(current) {
    const banner = $("routes-error");
    const by = current.savedBy ? ` by ${current.savedBy}` : "";
    const at = current.savedAt ? ` ${when(current.savedAt)}` : "";
    const theirs = el("button", { type: "button", className: "button", id: "routes-theirs" }, "Load their routes");
    theirs.addEventListener("click", () => {
      take(current);
      banner.hidden = true;
      render();
      $("routes-title").focus();
      notice(`These are the routes saved${at}${by}. Make your change again on top of them, then save.`);
    });
    banner.replaceChildren(el("strong", {}, "Someone else saved the routes since you loaded them."),
      ` They were saved${at}${by}; nothing of yours is saved. Load theirs to see them (your changes here are then `
      + "dropped: make them again on top), or keep editing and copy what you need first.",
      el("span", { className: "buttons" }, theirs));
    banner.hidden = false;
    render();
    banner.focus();
  }

  // -- save and preview ----------------------------------------------------------------------------------------------
  async function busy(button, run) {
    button.disabled = true;
    $("routes-error").hidden = true;
    try { await run(); } finally { render(); }
  }

  function save() {
    return busy($("routes-save"), async () => {
      const previewed = state.preview && same(state.previewedAs, rules()) ? state.preview : null;
      let answer;
      try {
        answer = await api("/api/routes", { method: "PUT", body: { routes: rules() },
          headers: { "If-Match": `"${state.version}"` } });
      } catch (error) {
        refused(error, "Nothing is saved");
        return;
      }
      take(answer, previewed);
      const count = answer.routes.length;
      // What the connector decided for the admin (a name ServiceNow matched only when case is ignored) is said too.
      const notes = (answer.notes || []).map((n) => ` ${n.message}.`).join("");
      notice(`The routes are saved: ${count} ${count === 1 ? "rule" : "rules"}. The next ticket follows them; tickets `
        + `made before stay where they are.${notes}`);
      $("notice").focus();
    });
  }

  function discard() {
    if (!window.confirm("Discard your changes to the routes? The saved list comes back.")) return;
    reset();
    render();
    $("routes-title").focus();
    notice("Your changes are discarded: this is the saved list.");
  }

  function runPreview() {
    return busy($("routes-preview-button"), async () => {
      const asked = structuredClone(rules());
      let answer;
      try {
        answer = await api("/api/routes/preview", { method: "POST", body: { routes: asked } });
      } catch (error) {
        refused(error, "Nothing to preview");
        return;
      }
      for (const item of state.draft) item.errors = [];
      state.preview = answer;
      state.previewedAs = asked;
      showPreview(answer);
      $("preview-title").focus();
    });
  }

  function targetNodes(target) {
    return [el("span", {}, `${target.connection} · ${target.table}`),
      target.assignmentGroup ? el("span", { className: "sub" }, `Group ${reference(target.assignmentGroup)}`) : null,
      target.company ? el("span", { className: "sub" }, `Company ${reference(target.company)}`) : null,
      ...Object.entries(target.fields || {}).map(([name, value]) => el("span", { className: "sub" }, `${name} = ${value}`))];
  }

  const ruleWords = (rule) => (rule ? `${rule.index + 1}. ${rule.name || "Unnamed rule"}` : "None: as before routes");

  function showPreview(answer) {
    const items = answer.recommendations || [];
    const tenants = [...new Set(items.map((r) => r.tenant || "home"))];
    const rows = items.map((rec) => {
      const points = rec.maxScore === null || rec.maxScore === undefined ? null
        : `${rec.maxScore} ${rec.maxScore === 1 ? "point" : "points"}`;
      const about = [rec.id, rec.category, points, tenants.length > 1 ? tenantName(rec.tenant || "home") : null];
      const due = rec.target.dueInDays ? `in ${rec.target.dueInDays} days` : "–";
      const ticket = rec.ticket ? `${rec.ticket.number || "pending"}, stays on ${rec.ticket.connection}` : "–";
      return el("tr", { "data-rule": rec.rule ? rec.rule.index : "none", "data-tenant": rec.tenant || "home",
        "data-text": `${rec.id} ${rec.title || ""}`.toLowerCase() },
      el("td", { className: "action" }, el("span", { className: "title" }, rec.title || rec.id),
        el("span", { className: "sub" }, about.filter(Boolean).join(" · "))),
      el("td", { className: "taken", "data-label": "Rule" }, ruleWords(rec.rule)),
      el("td", { className: "target", "data-label": "Ticket goes to" }, ...targetNodes(rec.target)),
      el("td", { className: "priority", "data-label": "Priority" }, rec.target.priority),
      el("td", { className: "due", "data-label": "Due" }, due),
      el("td", { className: "open-ticket", "data-label": "Open ticket" }, ticket));
    });
    $("preview-table").tBodies[0].replaceChildren(...rows);
    const counts = answer.rules || [];
    $("p-rule").replaceChildren(el("option", { value: "" }, `Every rule (${items.length})`),
      ...counts.map((r) => el("option", { value: String(r.index) }, `${ruleWords(r)} (${r.matched})`)),
      el("option", { value: "none" }, `No rule: as before routes (${answer.unmatched || 0})`));
    $("p-tenant").replaceChildren(el("option", { value: "" }, "Every tenant"),
      ...tenants.map((t) => el("option", { value: t }, tenantName(t))));
    $("p-tenant-field").hidden = tenants.length < 2;
    $("p-text").value = "";
    const idle = counts.filter((r) => r.matched === 0);
    const none = items.length === 0;  // nothing read from Secure Score yet, or nothing open: no table to filter
    $("preview-filters").hidden = none;
    $("preview-table").closest(".scroll").hidden = none;
    $("preview-summary").textContent = none ? "No open improvement action to preview: Secure Score has not been read "
      + "yet, or every action is done. Refresh from Secure Score on the page, then preview again."
      : `${items.length} open improvement actions: `
      + `${items.length - (answer.unmatched || 0)} take a rule, ${answer.unmatched || 0} go as before routes.`
      + (idle.length ? ` ${idle.length === 1 ? "This rule takes" : "These rules take"} nothing: `
        + `${idle.map(ruleWords).join("; ")}.` : "")
      + ` Previewed ${when(answer.at)}.`;
    $("routes-preview").hidden = false;
    filterPreview();
  }

  function filterPreview() {
    const rule = $("p-rule").value;
    const tenant = $("p-tenant").value;
    const text = $("p-text").value.trim().toLowerCase();
    let shown = 0;
    const rows = [...$("preview-table").tBodies[0].rows];
    for (const row of rows) {
      const visible = (!rule || row.dataset.rule === rule) && (!tenant || row.dataset.tenant === tenant)
        && (!text || row.dataset.text.includes(text));
      row.hidden = !visible;
      if (visible) shown += 1;
    }
    $("preview-shown").textContent = `${shown} of ${rows.length} shown`;
  }

  // -- the editor: one rule in a form ----------------------------------------------------------------------------------
  // What the form offers: the connections (GET /api/connections), the tenants, and the services Secure Score names.
  async function choices() {
    const [connections, seen] = await Promise.allSettled([
      state.connections || api("/api/connections").then((a) => (a.connections || []).map((c) => c.id)),
      state.services && state.services.length ? state.services
        : api("/api/recommendations?tenant=all&status=all").then((a) => [...new Set(
        (a.recommendations || []).map((r) => r.service).filter(Boolean))].sort())]);
    if (connections.status === "fulfilled") state.connections = connections.value;
    if (seen.status === "fulfilled") state.services = seen.value;
  }

  function checkboxes(member, values, chosen, label = (v) => v) {
    const all = [...new Set([...values, ...(chosen || [])])];
    $(`r-${member}-options`).replaceChildren(...all.map((value, i) => el("label", { className: "choice" },
      el("input", { type: "checkbox", value, id: `r-${member}-${i}`, checked: (chosen || []).includes(value) }),
      label(value))));
  }

  function fieldRow(name = "", value = "") {
    const n = document.querySelectorAll("#r-fields-rows .field-row").length + state.next++;
    const row = el("div", { className: "field-row" },
      el("label", { for: `r-field-name-${n}`, className: "visually-hidden" }, "Field name"),
      el("input", { id: `r-field-name-${n}`, className: "field-name", value: name, placeholder: "field name",
        autocomplete: "off", spellcheck: "false" }),
      el("label", { for: `r-field-value-${n}`, className: "visually-hidden" }, "Value"),
      el("input", { id: `r-field-value-${n}`, className: "field-value", value, placeholder: "value", autocomplete: "off" }));
    const drop = el("button", { type: "button", className: "button", "aria-label": `Remove field ${name || "row"}` },
      "Remove");
    drop.addEventListener("click", () => {
      const rows = [...document.querySelectorAll("#r-fields-rows .field-row")];
      const at = rows.indexOf(row);
      row.remove();
      const next = rows[at + 1] || rows[at - 1];
      (next ? next.querySelector(".field-name") : $("r-field-add")).focus();
    });
    row.append(drop);
    $("r-fields-rows").append(row);
    return row;
  }

  function referenceField(member, value) {
    $(`r-${member}`).value = reference(value);
    const hint = $(`r-${member}-hint`);
    hint.textContent = value && typeof value === "object"
      ? `Found in ServiceNow when saved: ${value.name || "(no name)"}, sys_id ${value.sysId}. Change it to choose another.`
      : "Its name in ServiceNow (whatever its case; type part of it for the instance's names), or its sys_id; "
        + "looked up when you save.";
    $(`r-${member}-list`).replaceChildren();
  }

  // As the admin types, the active names of the rule's connection that contain it (GET /api/connections/{id}/lookup,
  // at most 20), offered by the field; two records of one name are offered by sys_id, the name beside it.
  const LOOKUP = { assignmentGroup: "sys_user_group", company: "core_company" };
  let lookupTimer = null;

  function suggest(member) {
    window.clearTimeout(lookupTimer);
    const text = $(`r-${member}`).value.trim();
    if (text.length < 2 || text.includes("^") || /^[0-9a-f]{32}$/.test(text)) return;
    lookupTimer = window.setTimeout(async () => {
      const connection = encodeURIComponent($("r-connection").value || "default");
      let answer;
      try {
        answer = await api(`/api/connections/${connection}/lookup?table=${LOOKUP[member]}&prefix=`
          + encodeURIComponent(text));
      } catch {
        return;  // suggestions only: the save names any problem with the name
      }
      if ($(`r-${member}`).value.trim() !== text) return;  // typed on since: a newer lookup follows
      const counts = new Map();
      for (const r of answer.records) counts.set(r.name, (counts.get(r.name) || 0) + 1);
      $(`r-${member}-list`).replaceChildren(...answer.records.map((r) => (counts.get(r.name) > 1
        ? el("option", { value: r.sysId, label: `${r.name} (sys_id ${r.sysId})` })
        : el("option", { value: r.name }))));
    }, 250);
  }

  function fieldError(member, text) {
    const shown = $(`r-${member}-error`);
    shown.textContent = text;
    shown.hidden = false;
    const control = $(`r-${member}`);
    if (control.tagName !== "FIELDSET") control.setAttribute("aria-invalid", "true");
    else control.classList.add("invalid");
  }

  function clearErrors() {
    for (const member of Object.keys(LABELS)) {
      $(`r-${member}-error`).hidden = true;
      $(`r-${member}`).removeAttribute("aria-invalid");
      $(`r-${member}`).classList.remove("invalid");
    }
    $("rule-dialog-error").hidden = true;
  }

  // The control a member's problem points at: a group's first box, the first extra field's value.
  function control(member) {
    const found = $(`r-${member}`);
    if (found.tagName !== "FIELDSET") return found;
    return found.querySelector("input") || $("r-field-add");
  }

  async function edit(key = null, member = null) {
    const at = key === null ? -1 : state.draft.findIndex((e) => e.key === key);
    const item = at >= 0 ? state.draft[at] : null;
    const rule = item ? item.rule : { set: { connection: "default" } };
    const opener = document.activeElement;
    await choices();
    state.editing = { key: item ? item.key : null, rule, opener };
    const match = rule.match || {};
    const set = rule.set || {};
    $("rule-dialog-title").textContent = item ? `Edit rule ${at + 1}` : `Add rule ${state.draft.length + 1}`;
    $("rule-apply").textContent = item ? "Update the rule" : "Add the rule";
    $("r-name").value = rule.name || "";
    const tenantIds = state.tenants.map((t) => (t.home ? "home" : t.id));
    checkboxes("tenants", tenantIds.length ? tenantIds : ["home"], match.tenants, tenantName);
    checkboxes("categories", CATEGORIES, match.categories);
    checkboxes("services", state.services || [], match.services);
    if (!$("r-services-options").children.length) {  // none read yet: say why, rather than an empty group
      $("r-services-options").append(el("p", { className: "hint" }, state.services ? "No services yet: they are the "
        + "ones Secure Score names, known once it is read (Refresh from Secure Score on the page)."
        : "The services could not be read now; close this and open it again to retry."));
    }
    $("r-minPoints").value = match.minPoints === undefined ? "" : String(match.minPoints);
    $("r-controls").value = (match.controls || []).join("\n");
    const connections = [...new Set([...(state.connections || ["default"]), set.connection || "default"])];
    $("r-connection").replaceChildren(...connections.map((c) => el("option", { value: c }, c)));
    $("r-connection").value = set.connection || "default";
    $("r-table").value = set.table || "";
    referenceField("assignmentGroup", set.assignmentGroup);
    referenceField("company", set.company);
    $("r-priority").value = set.priority === undefined ? "" : String(set.priority);
    $("r-dueInDays").value = set.dueInDays === undefined ? "" : String(set.dueInDays);
    $("r-fields-rows").replaceChildren();
    for (const [name, value] of Object.entries(set.fields || {})) fieldRow(name, value);
    clearErrors();
    const general = [];
    for (const problem of item ? item.errors : []) {
      if (problem.member) fieldError(problem.member, problem.text); else general.push(el("p", {}, problem.text));
    }
    if (general.length) { $("rule-dialog-error").replaceChildren(...general); $("rule-dialog-error").hidden = false; }
    $("rule-dialog").showModal();
    const first = member || (item && item.errors.find((p) => p.member) || {}).member;
    (first ? control(first) : $("r-name")).focus();
  }

  // A number as a number; anything else as typed, so the connector says what is wrong with it in its own words.
  const numberOr = (text) => (/^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text);
  const checked = (member) => [...document.querySelectorAll(`#r-${member}-options input:checked`)].map((i) => i.value);

  function formRule() {
    const before = state.editing.rule;
    const rule = {};
    if (before.id) rule.id = before.id;
    const name = $("r-name").value.trim();
    if (name) rule.name = name;
    const match = {};
    for (const member of ["tenants", "categories", "services"]) {
      const values = checked(member);
      if (values.length) match[member] = values;
    }
    const points = $("r-minPoints").value.trim();
    if (points) match.minPoints = numberOr(points);
    const patterns = [...new Set($("r-controls").value.split("\n").map((p) => p.trim()).filter(Boolean))];
    if (patterns.length) match.controls = patterns;
    if (Object.keys(match).length) rule.match = match;
    const set = { connection: $("r-connection").value };
    const table = $("r-table").value.trim();
    if (table) set.table = table;
    for (const member of ["assignmentGroup", "company"]) {
      const text = $(`r-${member}`).value.trim();
      const was = (before.set || {})[member];
      if (text) set[member] = was && text === reference(was) ? was : text;  // unchanged: the sys_id found
    }
    if ($("r-priority").value) set.priority = $("r-priority").value;
    const days = $("r-dueInDays").value.trim();
    if (days) set.dueInDays = numberOr(days);
    const fields = {};
    for (const row of document.querySelectorAll("#r-fields-rows .field-row")) {
      const fieldName = row.querySelector(".field-name").value.trim();
      const value = row.querySelector(".field-value").value;
      if (fieldName || value) fields[fieldName] = value;
    }
    if (Object.keys(fields).length) set.fields = fields;
    rule.set = set;
    return rule;
  }

  // Two rows of one field name would keep only the last: the editor says so rather than drop one.
  function namedTwice() {
    const names = [...document.querySelectorAll("#r-fields-rows .field-name")];
    const seen = new Set();
    return names.find((input) => {
      const name = input.value.trim();
      if (name && seen.has(name)) return true;
      seen.add(name);
      return false;
    });
  }

  function apply(event) {
    event.preventDefault();
    const twice = namedTwice();
    if (twice) {
      fieldError("fields", `${ITEM.fields} "${twice.value.trim()}" is named twice: keep one row of it.`);
      twice.focus();
      return;
    }
    const rule = formRule();
    const { key } = state.editing;
    let item = state.draft.find((e) => e.key === key);
    if (item) {
      item.rule = rule;
      item.errors = [];
    } else {
      item = entry(rule);
      state.draft.push(item);
    }
    state.editing.done = item.key;
    const at = state.draft.indexOf(item);
    $("rule-dialog").close();
    render();
    notice(`${capital(ruleLabel(rule, at))} is ${key === null ? "added to" : "changed in"} the list (not saved yet: `
      + "Save keeps it).");
  }

  function closed() {
    const editing = state.editing;
    state.editing = null;
    if (!editing) return;
    if (editing.done !== undefined) focusRule(editing.done, "edit");
    else if (editing.opener && document.contains(editing.opener)) editing.opener.focus();
    else $("route-add").focus();
  }

  function wire() {
    $("route-add").addEventListener("click", () => edit());
    $("routes-save").addEventListener("click", save);
    $("routes-discard").addEventListener("click", discard);
    $("routes-preview-button").addEventListener("click", runPreview);
    $("rule-form").addEventListener("submit", apply);
    $("rule-cancel").addEventListener("click", () => $("rule-dialog").close());
    $("rule-dialog").addEventListener("close", closed);
    $("r-field-add").addEventListener("click", () => fieldRow().querySelector(".field-name").focus());
    for (const member of Object.keys(LOOKUP)) $(`r-${member}`).addEventListener("input", () => suggest(member));
    for (const id of ["p-rule", "p-tenant"]) $(id).addEventListener("change", filterPreview);
    $("p-text").addEventListener("input", filterPreview);
    $("preview-filters").addEventListener("submit", (event) => event.preventDefault());
  }

  // Leaving the view drops the draft (app.js asked first when it had changes).
  function reset() {
    state.draft = state.saved.map((rule) => entry(structuredClone(rule)));
    $("routes-error").hidden = true;
  }

  return { load, open, exist, unsaved, dueNote, wire, reset };
};
