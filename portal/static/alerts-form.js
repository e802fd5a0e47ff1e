// The Alerts view's form (docs/alerts.md#a-rule): one alert's name, id, tenants ("all" or a checklist of
// GET /api/tenants), below (percent), dropOf (points) and within (days), and the alert a save sends. Problems the
// connector names for this alert (alerts[2].below, alerts[2].tenants[0]) show under their field.
import { $, el } from "./dom.js";
import { formErrors } from "./problems.js";
import { tenantName as wordsTenantName } from "./words.js";

const FIELDS = { name: "The name", id: "The id", tenants: "Tenants", below: "Below", dropOf: "Drops by",
  within: "Within" };
export const errors = formErrors("al-", FIELDS, "alert-form-error");

export const known = { tenants: [] };  // GET /api/tenants, read when the view opens
const tenantKey = (t) => (t.home ? "home" : t.id);

export const tenantName = (id) => wordsTenantName(known.tenants, id);

// The alert's line in words: "below 60 %", "drops 20 points within 7 days", or both joined by "or".
export function line(alert) {
  const parts = [];
  if (alert.below !== undefined && alert.below !== null) parts.push(`below ${alert.below} %`);
  if (alert.dropOf !== undefined && alert.dropOf !== null) {
    parts.push(`drops ${alert.dropOf} ${alert.dropOf === 1 ? "point" : "points"} within ${alert.within || 7} `
      + `${alert.within === 1 ? "day" : "days"}`);
  }
  return parts.join(" or ");
}

function reach() {
  const all = $("al-reach-all").checked;
  for (const input of $("al-tenants-options").querySelectorAll("input")) input.disabled = all;
}

const shownNumber = (value) => (value === undefined || value === null ? "" : String(value));

// The form for `alert` (a new one: null). The id of a saved alert is not changed here: it names its tickets.
export function fill(alert) {
  errors.clear();
  const a = alert || { tenants: "all" };
  $("al-name").value = a.name || "";
  $("al-id").value = a.id || "";
  $("al-id").readOnly = Boolean(alert);
  const every = a.tenants === "all";
  const chosen = Array.isArray(a.tenants) ? a.tenants : [];
  $("al-reach-all").checked = every;
  $("al-reach-some").checked = !every;
  const ids = [...new Set([...known.tenants.map(tenantKey), ...chosen])];
  $("al-tenants-options").replaceChildren(...ids.map((id, i) => el("label", { className: "choice" },
    el("input", { type: "checkbox", value: id, id: `al-tenant-${i}`, checked: chosen.includes(id) }), tenantName(id))));
  $("al-below").value = shownNumber(a.below);
  $("al-dropOf").value = shownNumber(a.dropOf);
  $("al-within").value = alert ? shownNumber(a.within) : "";
  reach();
}

// A number as a number; anything else as typed, so the connector names what is wrong with it.
const typed = (text) => (/^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text);

// An id from the name when the admin gives none: what the connector accepts (docs/alerts.md#a-rule).
const idFrom = (name) => name.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[^a-z0-9]+|-+$/g, "").slice(0, 58);

export function body() {
  const name = $("al-name").value.trim();
  const out = { id: $("al-id").value.trim() || idFrom(name), name,
    tenants: $("al-reach-all").checked ? "all"
      : [...$("al-tenants-options").querySelectorAll("input:checked")].map((i) => i.value) };
  for (const field of ["below", "dropOf", "within"]) {
    const text = $(`al-${field}`).value.trim();
    if (text) out[field] = typed(text);
  }
  return out;
}

// A refusal's problems: those of this alert (alerts[i]) under their fields, a tenant named by its name; one without
// a member (neither below nor dropOf) under Below; another alert's (a tenant removed since it named it) in the
// banner, under that alert's name. `list`: the alerts sent.
export function refused(error, index, list) {
  const problem = error.problem || {};
  const sent = list[index];
  const others = [];
  if (Array.isArray(problem.errors)) {
    const own = `alerts[${index}]`;
    problem.errors = problem.errors.map((e) => {
      const field = (e && e.field) || "";
      if (field === own) return { ...e, field: "below" };
      if (!field.startsWith(`${own}.`)) {
        const at = /^alerts\[(\d+)\](?:\.tenants\[(\d+)\])?/.exec(field);
        const alert = at ? list[Number(at[1])] : null;
        const what = alert && at[2] !== undefined && Array.isArray(alert.tenants)
          ? `${tenantName(alert.tenants[Number(at[2])])}: ${e.message}` : `${field} ${e.message}`;
        others.push(alert ? `The alert "${alert.name || alert.id}": ${what}` : what);
        return e;
      }
      const rest = field.slice(own.length + 1);
      const at = /^tenants\[(\d+)\]$/.exec(rest);
      if (at) return { ...e, field: "tenants", message: `${tenantName(sent.tenants[Number(at[1])])}: ${e.message}` };
      return { ...e, field: rest };
    });
  }
  errors.answer(error);
  if (others.length) {
    $("alert-form-error").append(el("ul", {}, ...others.map((text) => el("li", {}, text))));
    $("alert-form-error").focus();
  }
}

export function wire() {
  for (const id of ["al-reach-all", "al-reach-some"]) $(id).addEventListener("change", reach);
}
