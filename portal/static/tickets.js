// The ServiceNow card: counts per status, the overdue count, the last status sync and the tickets (GET
// /api/tickets). With several ServiceNow instances each ticket says which one its record lives on. The overdue
// count (open and past its due date) is a toggle: pressed, the table lists those only (?status=overdue).
import { api } from "./api.js";
import * as connections from "./connections.js";
import { $, el } from "./dom.js";
import { problemNodes } from "./problems.js";
import { dueNote } from "./route-words.js";
import { scope, shown } from "./scope.js";
import { when } from "./words.js";

export const STATUS = { pending: "Pending", new: "New", in_progress: "In progress", on_hold: "On hold",
  resolved: "Resolved", closed: "Closed", canceled: "Canceled", unknown: "Unknown", missing: "Missing" };
let overdueOnly = false;

export async function loadTickets() {
  const tbody = $("tickets").tBodies[0];
  const asked = shown.tenant;
  try {
    const [card, known] = await Promise.all([
      api(`/api/tickets?status=${overdueOnly ? "overdue" : "all"}${scope()}`), connections.listed()]);
    if (asked !== shown.tenant) return;
    const { overdue = 0, ...statuses } = card.summary;
    if (overdueOnly && !overdue) { overdueOnly = false; return loadTickets(); }
    $("counts").replaceChildren(...Object.entries(statuses).filter(([, n]) => n > 0)
      .map(([status, n]) => el("li", {}, el("strong", {}, n), STATUS[status] || status)));
    if (!$("counts").children.length) $("counts").append(el("li", {}, "No tickets yet"));
    $("overdue").hidden = !overdue;
    $("overdue").setAttribute("aria-pressed", String(overdueOnly));
    $("overdue").replaceChildren(el("strong", {}, overdue), " overdue",
      el("span", { className: "visually-hidden" }, " (show only these)"));
    $("tickets-caption").textContent = overdueOnly ? "Overdue tickets, newest first" : "Tickets, newest first";
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

// Another tenant's page opens on all its tickets.
export function showAll() {
  overdueOnly = false;
}

// An improvement action's ticket, on its row: its number, status and who it is assigned to.
export function ticketLink(ticket) {
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

// A due date, and past it (open and overdue, as the connector counts it) in words and colour, not colour alone.
function dueLine(ticket) {
  const due = dueNote(ticket);
  if (!due) return null;
  return ticket.overdue ? el("span", { className: "sub due overdue" }, `Overdue: ${due.charAt(0).toLowerCase()}${due.slice(1)}`)
    : el("span", { className: "sub due" }, due);
}

export function wire() {
  $("overdue").addEventListener("click", () => { overdueOnly = !overdueOnly; loadTickets(); });
}
