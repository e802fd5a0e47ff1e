// A template's preview and apply (POST /api/templates/{id}/preview and /apply, docs/templates.md) and what its
// records say (its drift and the exceptions ending soon), as tables. An apply that fans out answers 202 with a
// progress URL: the page reads it until it says the apply is done.
import { api } from "./api.js";
import { $, el } from "./dom.js";
import { controlName, tenantName } from "./template-form.js";
import { when } from "./words.js";

const STATES = { ThirdParty: "Third party", Ignored: "Ignored", Reviewed: "Reviewed", Default: "Default" };
export const stateWords = (s) => STATES[s] || s || "–";
const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
const POLL_MS = 2000;
const POLL_LIMIT = 450;  // 15 minutes of polls: then the page says to look again later

function cells(...values) {
  return el("tr", {}, el("th", { scope: "row", className: "name" }, values[0]),
    ...values.slice(1).map((v) => el("td", { className: "name" }, v)));
}

// Each cell is named by its column (data-label), so that on a phone a row stacks and still says what each value is.
function table(id, rows, none, noneText) {
  const heads = [...$(id).tHead.rows[0].cells].map((c) => c.textContent);
  for (const row of rows) [...row.cells].forEach((cell, i) => { if (i) cell.dataset.label = heads[i]; });
  $(id).tBodies[0].replaceChildren(...rows);
  $(id).closest(".scroll").hidden = !rows.length;
  if (none) $(none).textContent = rows.length ? "" : noneText;
}

// The template's own records: drift (who changed what, when) and the exceptions ending within 14 days.
export function showRecords(template) {
  const drift = template.drift || [];
  table("template-drift", drift.map((d) => cells(tenantName(d.tenant), controlName(d.control), stateWords(d.state),
    d.by || "–", d.at ? when(d.at) : "–")), "template-drift-none", "No drift: every control is as the template set it.");
  const expiring = template.expiring || [];
  table("template-expiring", expiring.map((x) => cells(tenantName(x.tenant), controlName(x.control), when(x.until))),
    "template-expiring-none", "Nothing ends within 14 days.");
}

function problemRows(answer) {
  return [...(answer.failed || []).map((f) => cells(tenantName(f.tenant), f.control ? controlName(f.control) : "Every control",
    `Failed: ${f.code}. ${f.detail || ""}`.trim())),
  ...(answer.drifted || []).map((d) => cells(tenantName(d.tenant), controlName(d.control),
    `Drifted: ${stateWords(d.state)}${d.by ? ` by ${d.by}` : ""}${d.at ? `, ${when(d.at)}` : ""}; not set back`)),
  ...(answer.missing || []).map((m) => cells(tenantName(m.tenant), controlName(m.control),
    "Missing: the tenant has no such control"))];
}

function counts(items) {
  $("template-counts").replaceChildren(...items.filter(([n]) => n !== undefined && n !== null)
    .map(([n, words]) => el("li", { "data-count": words }, el("strong", {}, String(n)), ` ${words}`)));
}

// How many entries a list of the answer has, counted whole when the connector cut it (`listedOf`).
const whole = (answer, name) => (answer.listedOf || {})[name] ?? (answer[name] || []).length;

// A list the connector cut (at most 2,000 entries each, `listedOf` counting it whole), in words; "" when none was.
function cutWords(answer) {
  const cut = Object.entries(answer.listedOf || {});
  return cut.length ? ` Listed: ${cut.map(([name, whole]) => `the first ${answer[name].length} of ${whole} ${name}`)
    .join(", ")} (the records keep every control).` : "";
}

export function showPreview(answer) {
  const changes = answer.changes || [];
  table("template-changes", changes.map((c) => cells(tenantName(c.tenant), controlName(c.control),
    `${stateWords(c.before)} → ${stateWords(c.after)}`)));
  const tenants = new Set(changes.map((c) => c.tenant)).size;
  $("template-preview-summary").textContent = changes.length
    ? `Apply would change ${count(whole(answer, "changes"), "control", "controls")} in `
      + `${count(tenants, "tenant", "tenants")}${answer.listedOf && answer.listedOf.changes ? " or more" : ""}; nothing is written yet.`
    : "Apply would change nothing: every control is already as the template says, or is listed below.";
  $("template-preview-part").hidden = false;
  outcome("Preview: what Apply would leave alone", answer, []);
  return `Preview: ${count(whole(answer, "changes"), "change", "changes")}, ${count(whole(answer, "missing"), "control",
    "controls")} missing, ${whole(answer, "drifted")} drifted, ${whole(answer, "failed")} failed.${cutWords(answer)}`;
}

function outcome(title, answer, numbers) {
  $("template-outcome-title").textContent = title;
  counts(numbers);
  const rows = problemRows(answer);
  table("template-problems", rows);
  $("template-outcome-part").hidden = !rows.length && !numbers.length;
}

export function showApplied(answer) {
  $("template-progress").hidden = true;
  const failed = whole(answer, "failed");
  const drifted = whole(answer, "drifted");
  outcome("Applied", answer, [[answer.applied, "applied"], [answer.unchanged, "unchanged"], [failed, "failed"],
    [drifted, "drifted"]]);
  return `Applied: ${answer.applied || 0} changed, ${answer.unchanged || 0} unchanged, ${failed} failed, ${drifted} drifted.`
    + cutWords(answer);
}

// The progress URL of a 202 (the apply went to the queue, one message per tenant).
export function progressUrl(answer) {
  const url = answer && answer.progress;
  return typeof url === "string" && url.startsWith("/") ? url : null;
}

// GET /api/templates/{id}/applies/{run}: {run, queued, done, applied, unchanged, failed, drifted, finished}.
const finished = (p) => p.finished === true;

// Reads the progress until the apply is done, showing tenants done of all; answers the last reading.
export async function follow(url, say) {
  const bar = $("template-progress");
  bar.hidden = false;
  $("template-outcome-part").hidden = false;
  for (let polls = 0; polls < POLL_LIMIT; polls += 1) {
    const seen = await api(url);
    const total = Number(seen.queued ?? 0);
    const done = Number(seen.done ?? 0);
    if (total > 0) { bar.max = total; bar.value = Math.min(done, total); }
    say(total > 0 ? `Applying: ${done} of ${count(total, "tenant", "tenants")} done.` : "Applying…");
    if (finished(seen)) return seen;
    await new Promise((resolve) => { window.setTimeout(resolve, POLL_MS); });
  }
  bar.hidden = true;
  say("The apply is still running: open the template again later to see what it did.");
  return null;
}
