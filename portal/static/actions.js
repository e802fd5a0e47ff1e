// The Secure Score card and the improvement actions (GET /api/recommendations): score, trend, and the actions with
// points, state and ticket, filtered on the page; the ones ticked are what the create dialog makes tickets for.
import { api } from "./api.js";
import { $, el } from "./dom.js";
import { problemNodes } from "./problems.js";
import { ADMIN, CREATE, can } from "./roles.js";
import { scope, shown } from "./scope.js";
import { ticketLink } from "./tickets.js";
import { drawTrend } from "./trend.js";
import { when } from "./words.js";

const STATE = { Default: "To address", Ignored: "Risk accepted", ThirdParty: "Resolved through third party",
  Reviewed: "Reviewed" };
const list = { actions: [], rows: [], unscored: 0, showUnscored: false };
export const selected = new Set();  // the ids of the actions ticked

// The actions ticked, in the table's order.
export const chosen = () => list.actions.filter((a) => selected.has(a.id));

export async function loadActions() {
  const tbody = $("recommendations").tBodies[0];
  const asked = shown.tenant;
  try {
    const answer = await api(`/api/recommendations?status=all${scope()}`);
    if (asked !== shown.tenant) return;  // another tenant was chosen meanwhile
    const score = answer.secureScore;
    $("score-value").textContent = score && score.current !== null ? String(score.current) : "–";
    $("score-max").textContent = score && score.max ? `of ${score.max} (${score.percent}%)` : "not read yet";
    $("refreshed").textContent = answer.refreshedAt ? `Read from Secure Score ${when(answer.refreshedAt)}` : "";
    $("refresh").hidden = !can(ADMIN);
    drawTrend(answer.history || []);
    list.actions = answer.recommendations;
    list.unscored = list.actions.filter((a) => a.scored === false).length;
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
  list.rows = list.actions.map((action) => {
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

function applyFilters() {
  const category = $("f-category").value;
  const status = $("f-status").value;
  const ticket = $("f-ticket").value;
  const text = $("f-text").value.trim().toLowerCase();
  let count = 0;
  for (const { action, row } of list.rows) {
    const scored = action.scored !== false;
    const visible = (scored || list.showUnscored)
      && (!category || action.category === category)
      && (status === "all" || (scored && (status === "completed") === Boolean(action.completed)))
      && (status !== "open" || !action.deprecated)
      && (ticket === "any" || (ticket === "with") === Boolean(action.ticket))
      && (!text || action.title.toLowerCase().includes(text) || action.id.toLowerCase().includes(text));
    row.hidden = !visible;
    if (visible) count += 1;
  }
  // Out of what is listed: the scored actions, and the others only once the admin asks for them.
  const listed = list.showUnscored ? list.rows.length : list.rows.length - (list.unscored || 0);
  $("shown").textContent = `${count} of ${listed} shown`;
  // Controls this tenant's snapshot does not score do not apply to it: hidden unless the admin asks for them.
  const toggle = $("unscored");
  toggle.hidden = !list.unscored;
  toggle.setAttribute("aria-pressed", String(list.showUnscored));
  toggle.textContent = list.showUnscored ? `Hide the ${list.unscored} not scored`
    : `Show ${list.unscored} not scored for this tenant`;
}

// Ticks an action (or, with `on` false, unticks it) and says on the Create button how many are ticked; select("",
// false) only says it again.
export function select(id, on) {
  if (on) selected.add(id); else selected.delete(id);
  const count = selected.size;
  $("create").disabled = count === 0;
  $("create").textContent = count > 1 ? `Create ${count} tickets` : "Create ticket";
  $("selected").textContent = count ? `${count} selected` : "";
}

export function wire() {
  for (const id of ["f-category", "f-status", "f-ticket"]) $(id).addEventListener("change", applyFilters);
  $("f-text").addEventListener("input", applyFilters);
  $("unscored").addEventListener("click", () => { list.showUnscored = !list.showUnscored; applyFilters(); });
  $("filters").addEventListener("submit", (event) => event.preventDefault());
}
