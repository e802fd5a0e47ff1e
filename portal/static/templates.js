// The Templates view (docs/templates.md, docs/portal.md#templates-one-decision-for-many-tenants): the list (#templates), one template
// (#templates/{id}, #templates/new) with its form, and for admins Save and Delete (If-Match: the version read, as
// the routes), Preview and Apply. A reader sees the same read-only. A 412 says someone else changed the template and
// shows theirs; a problem the connector names shows under its field (template-form.js).
import { api } from "./api.js";
import { $, el } from "./dom.js";
import { showError } from "./problems.js";
import { ADMIN, can } from "./roles.js";
import { body, errors, fill, known, readChoices, refused, tenantName, wire as wireForm } from "./template-form.js";
import { follow, progressUrl, showApplied, showPreview, showRecords, stateWords } from "./template-run.js";
import { when } from "./words.js";

const state = { list: [], template: null, back: "#" };
const path = (id) => `/api/templates/${encodeURIComponent(id)}`;
const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;

function say(text) {
  $("templates-result").textContent = text;
}

// Which part the address asks for: the list (null), a new template ("new") or one template (its id).
export function wanted(hash = window.location.hash) {
  if (!hash.startsWith("#templates/")) return null;
  try { return decodeURIComponent(hash.slice("#templates/".length)); } catch { return hash.slice("#templates/".length); }
}

export async function open(back) {
  if (back !== undefined) state.back = back;
  $("templates-back").setAttribute("href", state.back && state.back !== "#" ? state.back : window.location.pathname);
  $("templates-who").textContent = can(ADMIN) ? "Nothing is written to Secure Score until you press Apply."
    : "Only an admin of the connector (app role Connector.Admin) can change or apply them.";
  $("templates-error").hidden = true;
  let which = wanted();
  if (which === "new" && !can(ADMIN)) {  // a reader cannot make one: the list, and why
    window.history.replaceState(null, "", "#templates");
    which = null;
  }
  $("templates-list-part").hidden = which !== null;
  $("template-part").hidden = which === null;
  try {
    if (which === null) await showList();
    else await showOne(which);
  } catch (error) {
    showError($("templates-error"), error);
  }
}

// -- the list --------------------------------------------------------------------------------------------------
async function showList() {
  $("template-new").hidden = !can(ADMIN);
  const [answer] = await Promise.all([api("/api/templates"), known.read ? null : readChoices()]);
  state.list = answer.templates || [];
  $("template-table").tBodies[0].replaceChildren(...state.list.map(listRow));
  $("template-table").closest(".scroll").hidden = !state.list.length;
  $("templates-summary").textContent = state.list.length ? count(state.list.length, "template", "templates")
    : `No templates yet.${can(ADMIN) ? " New template makes one." : ""}`;
}

function listRow(t) {
  const tenants = t.tenants === "all" ? "All" : t.tenants.map(tenantName).join(", ");
  const applied = t.appliedAt ? [when(t.appliedAt), t.appliedBy ? el("span", { className: "sub" }, `by ${t.appliedBy}`) : null]
    : ["Never"];
  return el("tr", { "data-id": t.id },
    el("th", { scope: "row", className: "name" }, el("a", { href: `#templates/${encodeURIComponent(t.id)}` }, t.name)),
    el("td", { "data-label": "State" }, stateWords(t.state)),
    el("td", { className: "num", "data-label": "Controls" }, String(t.controls.length)),
    el("td", { className: "name", "data-label": "Tenants" }, tenants),
    el("td", { className: "applied", "data-label": "Last applied" }, ...applied),
    el("td", { className: `num${drifted(t) ? " alert" : ""}`, "data-label": "Drifted" }, String(drifted(t))));
}

// The list is one store read: it has the last apply's counts (lastApply), not each tenant's drift and endings,
// which the template's own view reads.
const drifted = (t) => Number((t.lastApply && t.lastApply.drifted) || 0);

// -- one template ----------------------------------------------------------------------------------------------
async function showOne(id) {
  const admin = can(ADMIN);
  for (const part of ["template-preview-part", "template-outcome-part"]) $(part).hidden = true;
  if (!known.read) await readChoices();
  const isNew = id === "new";
  state.template = isNew ? null : await api(path(id));
  const t = state.template || { tenants: "all", controls: [] };
  $("template-title").textContent = isNew ? "New template" : t.name;
  $("template-about").textContent = isNew ? "Choose the controls and the tenants; Save keeps it, nothing is applied."
    : `${t.savedAt ? `Saved ${when(t.savedAt)}${t.savedBy ? ` by ${t.savedBy}` : ""}. ` : ""}`
      + (t.appliedAt ? `Last applied ${when(t.appliedAt)}${t.appliedBy ? ` by ${t.appliedBy}` : ""}.` : "Never applied.");
  fill(t, admin);
  $("template-tools").hidden = !admin;
  for (const b of ["template-preview", "template-apply", "template-delete"]) $(b).hidden = isNew;
  $("template-overwrite-field").hidden = !admin || isNew;
  $("template-overwrite").checked = false;
  $("template-save").textContent = isNew ? "Save the template" : "Save";
  for (const part of ["template-drift-part", "template-expiring-part"]) $(part).hidden = isNew;
  if (!isNew) showRecords(t);
}

const ifMatch = () => ({ "If-Match": `"${state.template.version}"` });

async function busy(button, run) {
  button.disabled = true;
  $("templates-error").hidden = true;
  $("template-form-error").hidden = true;
  try { await run(); } catch (error) {
    showError($("template-form-error"), error);
    $("template-form-error").focus();
  } finally { button.disabled = false; }
}

function save(event) {
  event.preventDefault();
  return busy($("template-save"), async () => {
    errors.clear();
    const isNew = !state.template;
    let answer;
    try {
      answer = await api(isNew ? "/api/templates" : path(state.template.id),
        // onRiskAccepted has no field here (the API sets it): a save from the portal keeps what was saved
        { method: isNew ? "POST" : "PUT", headers: isNew ? {} : ifMatch(),
          body: isNew ? body() : { ...body(), onRiskAccepted: state.template.onRiskAccepted ?? null } });
    } catch (error) {
      if (error.status === 412) return stale();
      if (error.status === 400) return refused(error);
      throw error;
    }
    state.template = answer;
    if (isNew) window.history.replaceState(null, "", `#templates/${encodeURIComponent(answer.id)}`);
    await showOne(answer.id);
    say(`The template "${answer.name}" is saved: ${count(answer.controls.length, "control", "controls")}. Nothing `
      + "is written to Secure Score until you press Apply.");
    $("templates-result").focus();
  });
}

// Someone saved or applied the template meanwhile: theirs is shown, nothing of ours was kept.
async function stale() {
  await showOne(state.template.id);
  say("Someone else changed this template since you opened it: nothing of yours is saved. This is the template "
    + "now; make your change again and save.");
  $("templates-result").focus();
}

function remove() {
  if (!window.confirm(`Delete the template "${state.template.name}"? What it wrote in Secure Score stays.`)) return null;
  return busy($("template-delete"), async () => {
    try {
      await api(path(state.template.id), { method: "DELETE", headers: ifMatch() });
    } catch (error) {
      if (error.status === 412) return stale();
      throw error;
    }
    const name = state.template.name;
    state.template = null;
    window.history.pushState(null, "", "#templates");
    await open();
    say(`The template "${name}" is deleted. What it wrote in Secure Score stays.`);
    $("templates-title").focus();
  });
}

// Whether the form an admin has open says something other than the template saved (for a new one: anything).
export function unsaved() {
  if ($("template-part").hidden || !can(ADMIN)) return false;
  if (!state.template) return Boolean($("tp-name").value.trim() || body().controls.length);
  return edited();
}

// Whether the form says something other than the template saved: Preview and Apply use the saved one.
function edited() {
  const t = state.template;
  const sorted = (v) => (Array.isArray(v) ? [...v].sort() : v);
  const mine = body();
  return ["name", "state", "comment", "controls", "tenants", "expiresInDays"].some((k) =>
    JSON.stringify(sorted(mine[k] ?? null)) !== JSON.stringify(sorted(k === "comment" ? t[k] || "" : t[k] ?? null)));
}

function preview() {
  return busy($("template-preview"), async () => {
    say("Reading each tenant's controls…");
    const answer = await api(`${path(state.template.id)}/preview`, { method: "POST",
      body: $("template-overwrite").checked ? { overwriteDrift: true } : undefined });
    say(showPreview(answer) + (edited() ? " This is the template as saved: Save first to preview your changes." : ""));
    $("template-preview-title").focus();
  });
}

function apply() {
  return busy($("template-apply"), async () => {
    const overwrite = $("template-overwrite").checked;
    say("Applying…");
    // If-Match: the version on the screen is the one written (412 when someone saved another since).
    let answer = await api(`${path(state.template.id)}/apply`, { method: "POST", headers: ifMatch(),
      body: overwrite ? { overwriteDrift: true } : undefined });
    const url = typeof answer.applied === "number" ? null : progressUrl(answer);
    if (url) answer = await follow(url, say);
    $("template-preview-part").hidden = true;
    const words = answer ? showApplied(answer) : null;
    await showOne(state.template.id);
    if (answer) $("template-outcome-part").hidden = false;
    if (words) say(words);
    $("template-outcome-title").focus();
  });
}

export function wire() {
  wireForm();
  $("template-form").addEventListener("submit", save);
  $("template-delete").addEventListener("click", remove);
  $("template-preview").addEventListener("click", preview);
  $("template-apply").addEventListener("click", apply);
}
