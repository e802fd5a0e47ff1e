// The Templates view's form (docs/templates.md): one template's name, state, comment, tenants ("all" or a checklist
// of GET /api/tenants) and controls (chosen by title and service from GET /api/recommendations, sent as ids), and
// the body a save sends. Problems the connector names (controls[3], tenants[0]) show under their field.
import { api } from "./api.js";
import { $, el } from "./dom.js";
import { formErrors } from "./problems.js";
import { tenantName as wordsTenantName } from "./words.js";

export const MAX_COMMENT = 1000;  // templates/model.py MAX_COMMENT
const FIELDS = { name: "The name", state: "The state", comment: "The comment", tenants: "Tenants",
  controls: "Controls", expiresInDays: "Ends after" };
export const errors = formErrors("tp-", FIELDS, "template-form-error");

// What the form offers, read once per opening of the view: tenants and the controls Secure Score names.
export const known = { tenants: [], controls: [], read: false };

export async function readChoices() {
  const [tenants, controls] = await Promise.allSettled([api("/api/tenants"),
    api("/api/recommendations?tenant=all&status=all")]);
  if (tenants.status === "fulfilled") known.tenants = tenants.value.tenants || [];
  if (controls.status === "fulfilled") {
    const seen = new Map();
    for (const r of controls.value.recommendations || []) if (!seen.has(r.id)) seen.set(r.id, r);
    known.controls = [...seen.values()].sort((a, b) => String(a.title || a.id).localeCompare(String(b.title || b.id)));
  }
  known.read = controls.status === "fulfilled";
}

const tenantKey = (t) => (t.home ? "home" : t.id);

export const tenantName = (id) => wordsTenantName(known.tenants, id);

export function controlName(id) {
  const found = known.controls.find((c) => c.id === id);
  return found ? `${found.title || id}${found.service ? ` (${found.service})` : ""}` : id;
}

function box(group, value, label, chosen, i) {
  return el("label", { className: "choice", "data-text": label.toLowerCase() + " " + value.toLowerCase() },
    el("input", { type: "checkbox", value, id: `tp-${group}-${i}`, checked: chosen.includes(value) }), label);
}

function counter() {
  const used = $("tp-comment").value.length;
  $("tp-comment-count").textContent = `${used} of ${MAX_COMMENT} characters`;
}

function reach() {
  const all = $("tp-reach-all").checked;
  for (const input of $("tp-tenants-options").querySelectorAll("input")) input.disabled = all || $("template-fields").disabled;
}

function filterControls() {
  const text = $("tp-controls-filter").value.trim().toLowerCase();
  for (const label of $("tp-controls-options").children) label.hidden = Boolean(text) && !label.dataset.text.includes(text);
}

let until = {}; // the loaded template's `until` (docs/templates.md#a-template), kept through a save

// The form for `template` (a new one: empty); `editable` false: every input read-only (a reader).
export function fill(template, editable) {
  errors.clear();
  $("tp-name").value = template.name || "";
  $("tp-state").value = template.state || "ThirdParty";
  $("tp-comment").value = template.comment || "";
  counter();
  const every = template.tenants === "all" || template.tenants === undefined;
  const chosen = Array.isArray(template.tenants) ? template.tenants : [];
  $("tp-reach-all").checked = every;
  $("tp-reach-some").checked = !every;
  const ids = [...new Set([...known.tenants.map(tenantKey), ...chosen])];
  $("tp-tenants-options").replaceChildren(...ids.map((id, i) => box("tenant", id, tenantName(id), chosen, i)));
  const controls = template.controls || [];
  // The chosen first; a reader, who cannot choose, sees only those.
  const offered = editable ? [...new Set([...controls, ...known.controls.map((c) => c.id)])] : controls;
  $("tp-controls-options").replaceChildren(...offered.map((id, i) => box("control", id, controlName(id), controls, i)));
  $("tp-controls-hint").textContent = known.read ? `${controls.length} chosen of ${offered.length}; each by its title `
    + "and service in Secure Score." : "The controls could not be read now; reload the page to retry.";
  if (!offered.length && known.read) $("tp-controls-hint").textContent = "No controls yet: they are the ones Secure "
    + "Score names, known once it is read (Refresh from Secure Score on the page).";
  $("tp-controls-filter").value = "";
  for (const id of ["tp-controls-filter", "tp-controls-filter-label"]) $(id).hidden = !editable;
  if (!editable) $("tp-controls-hint").textContent = `${controls.length} ${controls.length === 1 ? "control" : "controls"}.`;
  $("tp-expiresInDays").value = template.expiresInDays ? String(template.expiresInDays) : "";
  until = template.until || {};
  $("template-fields").disabled = !editable;
  reach();
}

const picked = (where) => [...$(where).querySelectorAll("input:checked")].map((i) => i.value);

// The body of a POST or PUT: a number as a number, anything else as typed so the connector names what is wrong.
export function body() {
  const days = $("tp-expiresInDays").value.trim();
  const out = { name: $("tp-name").value.trim(), state: $("tp-state").value, comment: $("tp-comment").value.trim(),
    tenants: $("tp-reach-all").checked ? "all" : picked("tp-tenants-options"),
    controls: picked("tp-controls-options") };
  if (days) out.expiresInDays = /^\d+$/.test(days) ? Number(days) : days;
  // The page does not edit `until`: it sends back what it read, for the controls still chosen.
  const kept = Object.entries(until).filter(([control]) => out.controls.includes(control));
  if (kept.length) out.until = Object.fromEntries(kept);
  return out;
}

// A refusal's problems under their fields: `controls[3]` is the controls' group, named by its title.
export function refused(error) {
  const problem = error.problem || {};
  if (Array.isArray(problem.errors)) {
    const chosen = body();
    problem.errors = problem.errors.map((e) => {
      const at = /^(controls|tenants)\[(\d+)\]$/.exec((e && e.field) || "");
      if (!at) return e;
      const value = chosen[at[1]][Number(at[2])];
      const named = at[1] === "controls" ? controlName(value) : tenantName(value);
      return { ...e, field: at[1], message: `${named}: ${e.message}` };
    });
  }
  errors.answer(error);
}

export function wire() {
  $("tp-comment").addEventListener("input", counter);
  for (const id of ["tp-reach-all", "tp-reach-some"]) $(id).addEventListener("change", reach);
  $("tp-controls-filter").addEventListener("input", filterControls);
  $("tp-controls-filter").addEventListener("keydown", (event) => { if (event.key === "Enter") event.preventDefault(); });
}
