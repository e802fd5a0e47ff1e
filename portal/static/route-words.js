// The routes in words: a rule's match and what it sets, a ticket's due date a rule set, and a problem the connector
// names (routes[3].set.dueInDays) as a sentence about that rule and field.
import { state } from "./route-draft.js";

const MATCH = ["tenants", "categories", "services", "minPoints", "controls"];
const SET = ["connection", "table", "assignmentGroup", "company", "priority", "dueInDays", "fields"];

// How a sentence names each member of a rule (a problem names one), and one item of a list member.
export const LABELS = { name: "The name", tenants: "Tenants", categories: "Categories", services: "Services",
  minPoints: "Minimum points", controls: "Control id patterns", connection: "The connection", table: "The table",
  assignmentGroup: "The assignment group", company: "The company", priority: "The priority",
  dueInDays: "Due in days", fields: "Extra fields" };
export const ITEM = { tenants: "Tenant", categories: "Category", services: "Service", controls: "Control id pattern",
  fields: "Field" };

const listed = (items, word = "or") => (items.length > 1
  ? `${items.slice(0, -1).join(", ")} ${word} ${items[items.length - 1]}` : items.join(""));
export const reference = (value) => (value && typeof value === "object" ? value.name || value.sysId : value || "");

export function tenantName(id) {
  const found = state.tenants.find((t) => (t.home ? "home" : t.id) === id || t.id === id);
  const own = !found || /^this organi[sz]ation$/i.test(found.name || "");  // no name of its own to add to
  if (id === "home") return own ? "This organization" : `${found.name} (this organization)`;
  return found ? found.name : id;
}

export function matchWords(match = {}) {
  const words = [];
  if (match.tenants) words.push(`${match.tenants.length > 1 ? "tenants" : "tenant"} ${listed(match.tenants.map(tenantName))}`);
  if (match.categories) words.push(listed(match.categories));
  if (match.services) words.push(`${match.services.length > 1 ? "services" : "service"} ${listed(match.services)}`);
  if (match.minPoints !== undefined) words.push(`${match.minPoints} points or more`);
  if (match.controls) words.push(`${match.controls.length > 1 ? "controls" : "control"} ${listed(match.controls)}`);
  return words.length ? words.join(", ") : "Everything";
}

export function setWords(set = {}) {
  const words = [`connection ${set.connection || "default"}`];
  if (set.table) words.push(`table ${set.table}`);
  if (set.assignmentGroup) words.push(`group ${reference(set.assignmentGroup)}`);
  if (set.company) words.push(`company ${reference(set.company)}`);
  if (set.priority !== undefined) words.push(`priority ${set.priority}`);
  if (set.dueInDays !== undefined) words.push(`due in ${set.dueInDays} ${set.dueInDays === 1 ? "day" : "days"}`);
  for (const [name, value] of Object.entries(set.fields || {})) words.push(`${name} = ${value}`);
  return words.join(", ");
}

export const isCatchAll = (rule) => !Object.keys(rule.match || {}).length;
export const ruleLabel = (rule, i) => `rule ${i + 1}${rule.name ? ` (${rule.name})` : ""}`;

// On the tickets card: a due date a rule set says so.
export function dueNote(ticket) {
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

export const capital = (text) => text.charAt(0).toUpperCase() + text.slice(1);

// -- problems the connector names: on their rule, and under their field in its editor ----------------------------
// Where a problem's field (routes[3].set.dueInDays) points: the rule, its member, an item of a list, an extra field.
export function locate(field) {
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

export function sentence(subject, message) {
  const text = String(message || "is not valid").replace(/\.$/, "");
  return /^(is|must|are|has|take) /.test(text) ? `${subject} ${text}.` : `${subject}: ${text}.`;
}

export function errorText(rule, where, message) {
  if (!where.member) return sentence("This rule", message);
  const list = (rule.match || {})[where.member];
  if (where.item !== null && Array.isArray(list)) return sentence(`${ITEM[where.member]} "${list[where.item]}"`, message);
  if (where.member === "fields" && where.sub !== null) {
    return sentence(where.sub ? `${ITEM.fields} "${where.sub}"` : "A field without a name", message);
  }
  return sentence(LABELS[where.member], message);
}
