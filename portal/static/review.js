// A tenant's review for a period (docs/portal.md#a-tenants-review-the-page-for-a-quarterly-review), the page a
// provider shows a customer each quarter: GET /api/tenants/{id}/review?from&to (docs/api.md) drawn as four charts
// (review-charts.js), each with a real table of the same numbers beside it, as the JSON gives them. The address
// keeps the tenant and the period (#review/{tenant}, ?days=30 or ?from=YYYY-MM-DD&to=YYYY-MM-DD), so a reload or a
// bookmark shows the same review. The print stylesheet (app.css, @media print) makes it one A4 or Letter page.
import { api } from "./api.js";
import { $, el } from "./dom.js";
import { formErrors } from "./problems.js";
import { basisName, drawBars, drawRanked, drawScore, pct, points } from "./review-charts.js";
import * as tenants from "./tenants.js";
import { STATUS } from "./tickets.js";

const DAYS = 90;  // the longest period the API answers (docs/api.md)
const PRINTED = 8;  // the actions completed and regressed a printed page lists
const PAPER = 400;  // the score chart's width on a printed page, in CSS pixels (about 105 mm)
const FIELDS = { from: "From", to: "To" };  // as the API names them in a validation_failed answer
const form = formErrors("rv-", FIELDS, "review-error");
const state = { back: "#", tenant: null, review: null, asked: 0 };
const TITLE = document.title;

const iso = (date) => date.toISOString().slice(0, 10);
const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
const signed = (value) => (typeof value === "number" && value > 0 ? `+${points(value)}` : points(value));
const dayOnly = (value) => (value ? String(value).slice(0, 10) : "–");

// The tenant and the period the address asks for; the period is the last 90 days when it names none.
export function wanted(hash = window.location.hash) {
  if (!hash.startsWith("#review/")) return null;
  const [raw, query = ""] = hash.slice("#review/".length).split("?");
  let tenant = raw;
  try { tenant = decodeURIComponent(raw); } catch { /* kept as written */ }
  const asked = new URLSearchParams(query);
  const today = new Date();
  if (asked.get("from") || asked.get("to")) {
    return { tenant, from: asked.get("from") || "", to: asked.get("to") || iso(today), span: "dates" };
  }
  const days = asked.get("days") === "30" ? 30 : DAYS;
  return { tenant, from: iso(new Date(today.getTime() - (days - 1) * 86400000)), to: iso(today), span: String(days) };
}

const address = (tenant, span, from, to) => `#review/${encodeURIComponent(tenant)}`
  + (span === "dates" ? `?${new URLSearchParams({ from, to })}` : span === "30" ? "?days=30" : "");

export async function open(back) {
  if (back !== undefined) state.back = back;
  $("review-back").setAttribute("href", state.back && state.back !== "#" ? state.back : window.location.pathname);
  const asked = wanted();
  if (!asked) return;
  state.tenant = asked.tenant;
  $("rv-span").value = asked.span;
  $("rv-from").value = asked.from;
  $("rv-to").value = asked.to;
  $("rv-to").max = iso(new Date());
  showDates();
  await show(asked.from, asked.to);
}

async function show(from, to) {
  form.clear();
  const row = tenants.find(state.tenant);
  named(row ? row.name : state.tenant === "home" ? "This organization" : state.tenant);
  $("review-body").setAttribute("aria-busy", "true");
  const asked = ++state.asked;  // only the newest answer is shown: a period chosen while one is read wins
  try {
    const query = new URLSearchParams({ from, to });
    const answer = await api(`/api/tenants/${encodeURIComponent(state.tenant)}/review?${query}`);
    if (asked !== state.asked) return;
    state.review = answer;
    $("review-body").hidden = false;  // first: the charts are drawn as wide as they are shown
    if (state.review.tenant && state.review.tenant.name) named(state.review.tenant.name);
    render(state.review);
  } catch (error) {
    if (asked !== state.asked) return;
    $("review-body").hidden = true;
    $("review-period-shown").textContent = "";
    form.answer(error);
  } finally {
    if (asked === state.asked) $("review-body").removeAttribute("aria-busy");
  }
}

function named(name) {
  $("review-title").textContent = `Review: ${name}`;
  document.title = `Review of ${name} – ${TITLE}`;
}

function showDates() {
  const dates = $("rv-span").value === "dates";
  for (const id of ["rv-from-field", "rv-to-field"]) $(id).hidden = !dates;
}

// A period chosen: the address says it (replaced, so Back leaves the review), and the review is read again.
async function choose(event) {
  event.preventDefault();
  const span = $("rv-span").value;
  let from = $("rv-from").value, to = $("rv-to").value;
  if (span !== "dates") ({ from, to } = wanted(address(state.tenant, span, "", "")));
  else if (!from || !to) {
    form.clear();
    form.show(from ? "to" : "from", "Give a date");
    $(from ? "rv-to" : "rv-from").focus();
    return;
  }
  window.history.replaceState(null, "", address(state.tenant, span, from, to));
  await show(from, to);
  $("review-status").textContent = $("review-body").hidden ? ""
    : `${$("review-title").textContent}, ${$("review-period-shown").textContent}`;
}

// -- the four parts ----------------------------------------------------------------------------------------------
function render(review) {
  const score = review.score || [];
  $("review-period-shown").textContent = `${review.from} to ${review.to}`;
  $("review-print-date").textContent = `Printed ${new Date().toLocaleDateString()}`;
  drawScore($("rv-score-chart"), review);
  const last = score.length ? score[score.length - 1] : null;
  $("rv-compare").tBodies[0].replaceChildren(
    el("tr", {}, el("th", { scope: "row" }, last ? `This tenant on ${last.date}` : "This tenant"),
      el("td", { className: "num" }, last ? percent(last.percent) : "–"),
      el("td", { className: "num" }, last ? `${points(last.current)} of ${points(last.max)}` : "–")),
    ...(review.comparative || []).map((c) => el("tr", {}, el("th", { scope: "row" }, `${basisName(c.basis)} (average)`),
      el("td", { className: "num" }, pct(c.averageScore)), el("td", {}, "–"))));
  $("rv-score-table").tBodies[0].replaceChildren(...score.map((s) => el("tr", {}, el("th", { scope: "row" }, s.date),
    el("td", { className: "num" }, points(s.current)), el("td", { className: "num" }, points(s.max)),
    el("td", { className: "num" }, percent(s.percent)))));
  $("rv-score-days").textContent = count(score.length, "day", "days");
  renderActions(review.actions || {});
  renderTickets(review.tickets || {});
  renderTop(review.topOpen || []);
}

// An action's title: whole on screen, at most two lines on a printed page (app.css).
const titled = (item) => el("span", { className: "rv-title" }, item.title || item.id);
const percent = (value) => (typeof value === "number" ? `${value}%` : "–");
// What an action completed (or regressed) moved the score by, in points: negative for a regression.
const moved = (items) => items.reduce((sum, item) => sum + (typeof item.points === "number" ? item.points : 0), 0);

function renderActions(actions) {
  const completed = actions.completed || [], regressed = actions.regressed || [];
  drawBars($("rv-actions-chart"), [
    { label: "Completed", value: completed.length, tone: "done" },
    { label: "Regressed", value: regressed.length, tone: "regressed" }],
  "Improvement actions completed and regressed", `${count(completed.length, "action", "actions")} completed `
    + `(${signed(moved(completed))} points), ${count(regressed.length, "action", "actions")} regressed `
    + `(${signed(moved(regressed))} points).`);
  const line = (item, what) => el("tr", { "data-id": item.id, className: what.toLowerCase() },
    el("th", { scope: "row" }, titled(item)), el("td", {}, what),
    el("td", { className: "num" }, signed(item.points)), el("td", { className: "when" }, dayOnly(item.date)));
  // The regressions first (what went wrong), then the completed by the points they brought: a printed page keeps
  // the first PRINTED of them and says how many more the portal lists (app.css).
  const byPoints = [...completed].sort((a, b) => (b.points || 0) - (a.points || 0));
  const rows = [...regressed.map((item) => line(item, "Regressed")), ...byPoints.map((item) => line(item, "Completed"))];
  rows.forEach((row, i) => { if (i >= PRINTED) row.classList.add("beyond"); });
  if (rows.length > PRINTED) {
    rows.push(el("tr", { className: "print-only more" }, el("td", { colspan: 4 }, `and ${rows.length - PRINTED} more `
      + "(the portal's review lists each)")));
  }
  $("rv-actions").tBodies[0].replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: 4 }, "No action was completed or regressed in this period."))]));
}

function renderTickets(t) {
  const median = typeof t.medianDaysToResolve === "number" ? points(t.medianDaysToResolve) : "–";
  drawBars($("rv-tickets-chart"), [
    { label: "Opened", value: t.opened, tone: "opened" },
    { label: "Resolved", value: t.resolved, tone: "done" },
    { label: "Overdue", value: t.overdue, tone: "regressed" }],
  "ServiceNow tickets in the period", `${count(t.opened || 0, "ticket", "tickets")} opened, ${t.resolved || 0} `
    + `resolved, ${t.overdue || 0} overdue; median days to resolve: ${median}.`);
  const cells = [["Opened", t.opened], ["Resolved", t.resolved], ["Overdue", t.overdue],
    ["Median days to resolve", median]];
  $("rv-tickets").tBodies[0].replaceChildren(...cells.map(([label, value]) => el("tr", {},
    el("th", { scope: "row" }, label), el("td", { className: "num" }, value === undefined ? "–" : value))));
}

// The open actions with the most points left to gain, each with its ticket when it has one.
function renderTop(items) {
  drawRanked($("rv-top-chart"), items.map((item) => ({ value: item.pointsLeft })),
    "Top open improvement actions by points", items.length ? items.map((item, i) => `${i + 1}. ${item.title || item.id}: `
      + `${points(item.pointsLeft)} points to gain`).join("; ") : "No improvement action is open.");
  const ticket = (t) => (t ? [t.url ? el("a", { className: "number", href: t.url, title: t.number }, t.number)
    : el("span", { className: "number", title: t.number }, t.number),
    el("span", { className: "sub" }, STATUS[t.status] || t.status)] : ["–"]);
  $("rv-top").tBodies[0].replaceChildren(...(items.length ? items.map((item, i) => el("tr", { "data-id": item.id },
    el("td", { className: "num" }, i + 1), el("th", { scope: "row" }, titled(item)),
    el("td", { className: "num" }, points(item.pointsLeft)), el("td", { className: "num" }, points(item.maxScore)),
    el("td", { className: "ticket" }, ...ticket(item.ticket))))
    : [el("tr", {}, el("td", { colspan: 5 }, "No improvement action is open."))]));
}

// The score chart is drawn as wide as it is shown: a window made narrower or wider (a phone turned) draws it again.
let resized = null;
function redraw() {
  window.clearTimeout(resized);
  resized = window.setTimeout(() => {
    if (state.review && !$("review").hidden && !$("review-body").hidden) drawScore($("rv-score-chart"), state.review);
  }, 150);
}

export function wire() {
  $("review-period").addEventListener("submit", choose);
  $("rv-span").addEventListener("change", showDates);
  $("review-print").addEventListener("click", () => window.print());
  window.addEventListener("resize", redraw);
  // On paper the chart is a little over half the page wide: drawn for that, its words print at a readable size.
  window.addEventListener("beforeprint", () => {
    if (state.review && !$("review").hidden) drawScore($("rv-score-chart"), state.review, PAPER);
  });
  window.addEventListener("afterprint", redraw);
}
