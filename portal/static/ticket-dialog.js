// The create dialog (the original share flow: priority, due date, and for one action an editable name and
// description): one POST /api/tickets per action ticked, each with its own Idempotency-Key.
import { chosen, select, selected } from "./actions.js";
import { ApiError, api } from "./api.js";
import { $, el } from "./dom.js";
import { problemNodes, showError } from "./problems.js";
import { exist } from "./route-draft.js";
import { shown } from "./scope.js";
import { refreshAll } from "./view.js";

const keys = new Map();  // an action's Idempotency-Key, kept until its ticket is created

function openDialog() {
  const actions = chosen();
  if (!actions.length) return;
  const single = actions.length === 1;
  $("dialog-title").textContent = single ? "Create a ServiceNow ticket" : `Create ${actions.length} ServiceNow tickets`;
  $("dialog-what").textContent = single ? `For "${actions[0].title}" (${actions[0].id}).`
    : `One ticket each for: ${actions.map((a) => a.title).join("; ")}.`;
  $("single-fields").hidden = !single;
  $("t-name").required = single;
  if (single) {
    $("t-name").value = actions[0].title.slice(0, 160);
    $("t-description").value = (actions[0].remediation || "").slice(0, 4000);
  }
  for (const action of actions) if (!keys.has(action.id)) keys.set(action.id, crypto.randomUUID());
  const routed = exist();  // with routes, a rule's priority and due date apply by default
  $("t-priority").value = routed ? "" : "medium";
  $("t-priority").options[0].hidden = !routed;
  for (const [field, hint] of [["t-priority", "t-priority-hint"], ["t-due", "t-due-hint"]]) {
    $(hint).hidden = !routed;  // and not read out either: a hidden node named by aria-describedby still is
    if (routed) $(field).setAttribute("aria-describedby", hint); else $(field).removeAttribute("aria-describedby");
  }
  $("t-due").min = today();  // the date picker offers no past day; a typed one is said below the field
  pastDue();
  $("dialog-error").hidden = true;
  $("submit").disabled = false;
  $("dialog").showModal();
  if (single) {  // a long name opens at its start, not scrolled to its end
    $("t-name").focus();
    $("t-name").setSelectionRange(0, 0);
    $("t-name").scrollLeft = 0;
  } else {
    $("t-priority").focus();
  }
}

// Today in the admin's own time zone, as the date field gives its value (YYYY-MM-DD).
function today() {
  const now = new Date();
  return [now.getFullYear(), now.getMonth() + 1, now.getDate()].map((n) => String(n).padStart(2, "0")).join("-");
}

// A due date before today would make the ticket overdue the moment it exists: said under the field, not sent.
function pastDue() {
  const field = $("t-due");
  const past = Boolean(field.value) && field.value < today();
  const said = $("t-due-error");
  said.textContent = past ? `The due date ${field.value} is in the past: the ticket would be overdue at once. `
    + "Choose today or a later date, or none." : "";
  said.hidden = !past;
  const described = (field.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && id !== "t-due-error");
  if (past) described.push("t-due-error");
  if (described.length) field.setAttribute("aria-describedby", described.join(" "));
  else field.removeAttribute("aria-describedby");
  if (past) field.setAttribute("aria-invalid", "true"); else field.removeAttribute("aria-invalid");
  return past;
}

async function submitDialog(event) {
  event.preventDefault();
  const actions = chosen();
  const single = actions.length === 1;
  if (single && !$("t-name").value.trim()) {
    showError($("dialog-error"), new ApiError({ title: "Name required", detail: "Give the ticket a name." }, 400));
    $("t-name").focus();
    return;
  }
  if (pastDue()) {
    $("t-due").focus();
    return;
  }
  $("submit").disabled = true;
  const failures = [];
  for (const action of actions) {
    const body = { recommendation: { id: action.id } };
    if ($("t-priority").value) body.priority = $("t-priority").value;  // none: as the routes say
    if (shown.tenant && shown.tenant !== "home") body.tenant = shown.tenant;
    if ($("t-due").value) body.dueDate = $("t-due").value;
    if (single) {
      body.name = $("t-name").value.trim();
      if ($("t-description").value.trim()) body.description = $("t-description").value;
    }
    try {
      // One Idempotency-Key per action per dialog: pressing Create twice never makes two records.
      await api("/api/tickets", { method: "POST", body, headers: { "Idempotency-Key": keys.get(action.id) } });
      selected.delete(action.id);
      keys.delete(action.id);
    } catch (error) {
      failures.push([action, error]);
    }
  }
  if (failures.length) {
    $("dialog-error").replaceChildren(...failures.map(([action, error]) =>
      el("p", {}, el("strong", {}, `${action.title}: `), ...problemNodes(error))));
    $("dialog-error").hidden = false;
    $("submit").disabled = false;
    return;
  }
  $("dialog").close();
  select("", false);
  await refreshAll();
}

export function wire() {
  $("create").addEventListener("click", openDialog);
  $("cancel").addEventListener("click", () => $("dialog").close());
  $("dialog").addEventListener("close", () => $("create").focus());
  $("ticket-form").addEventListener("submit", submitDialog);
  $("t-due").addEventListener("change", pastDue);
}
