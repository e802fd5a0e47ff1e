// The Routes view's preview (POST /api/routes/preview): for each open improvement action, the rule the draft gives
// it and where its ticket would go, with counts per rule and filters by rule, tenant and text.
import { $, el } from "./dom.js";
import { reference, tenantName } from "./route-words.js";
import { when } from "./words.js";

function targetNodes(target) {
  return [el("span", {}, `${target.connection} · ${target.table}`),
    target.assignmentGroup ? el("span", { className: "sub" }, `Group ${reference(target.assignmentGroup)}`) : null,
    target.company ? el("span", { className: "sub" }, `Company ${reference(target.company)}`) : null,
    ...Object.entries(target.fields || {}).map(([name, value]) => el("span", { className: "sub" }, `${name} = ${value}`))];
}

const ruleWords = (rule) => (rule ? `${rule.index + 1}. ${rule.name || "Unnamed rule"}` : "None: as before routes");

export function showPreview(answer) {
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

export function wire() {
  for (const id of ["p-rule", "p-tenant"]) $(id).addEventListener("change", filterPreview);
  $("p-text").addEventListener("input", filterPreview);
  $("preview-filters").addEventListener("submit", (event) => event.preventDefault());
}
