// The Routes view's editor: one rule of the draft in a form (its match, and where its tickets go), with the names
// of the rule's ServiceNow instance offered as the admin types. Nothing is saved here: the rule goes into the draft.
import { api } from "./api.js";
import { $, el, notice } from "./dom.js";
import { entry, state } from "./route-draft.js";
import { ITEM, LABELS, capital, reference, ruleLabel, tenantName } from "./route-words.js";

const CATEGORIES = ["Identity", "Data", "Device", "Apps", "Infrastructure"];
let render = () => {};  // the Routes view's list, drawn again once a rule is applied

// A rule's button in the list (data-action: edit, up, down, delete), focused where the admin's work goes on.
export function focusRule(key, action) {
  const found = document.querySelector(`#rule-list li[data-key="${key}"] button[data-action="${action}"]`);
  if (found) found.focus();
}

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

export async function edit(key = null, member = null) {
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
  // Not in the form yet (docs/templates.md#risk-accepted-in-servicenow): kept as saved, never dropped by an edit.
  if ((before.set || {}).onRiskAccepted) set.onRiskAccepted = before.set.onRiskAccepted;
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

export function wire(onApplied) {
  render = onApplied;
  $("route-add").addEventListener("click", () => edit());
  $("rule-form").addEventListener("submit", apply);
  $("rule-cancel").addEventListener("click", () => $("rule-dialog").close());
  $("rule-dialog").addEventListener("close", closed);
  $("r-field-add").addEventListener("click", () => fieldRow().querySelector(".field-name").focus());
  for (const member of Object.keys(LOOKUP)) $(`r-${member}`).addEventListener("input", () => suggest(member));
}
