// A problem in the connector's own words (application/problem+json: title, detail, remediation, errors), shown in
// a banner, under a form's fields, or where a button's action failed.
import { $, el } from "./dom.js";
import { ADMIN, can } from "./roles.js";

export function problemNodes(error) {
  const problem = error.problem || {};
  return [el("strong", {}, problem.title || "Something went wrong"), " ", problem.detail || error.message,
    problem.remediation ? el("span", { className: "fix" }, `What to do: ${advice(problem.remediation)}`) : null];
}

// Connecting is an admin's step: a reader is told who can take it, not to open a route they are refused.
export function advice(remediation) {
  if (can(ADMIN) || !remediation.includes("/api/connect")) return remediation;
  return "Only an admin of the connector (app role Connector.Admin) can connect it to ServiceNow: "
    + "ask one to open this page and press Connect or Reconnect.";
}

export function showError(target, error) {
  target.replaceChildren(...problemNodes(error));
  target.hidden = false;
}

// A form's problems in the connector's own words: under each field a validation_failed answer names (its input
// marked invalid, the first one focused), anything else in the form's banner with its remediation. `fields` maps
// a field to how a sentence names it; its input is `${prefix}${field}`, its message `${prefix}${field}-error`.
export function formErrors(prefix, fields, banner) {
  const show = (field, message) => {
    const text = String(message || "is not valid").replace(/\.$/, "");
    const shown = $(`${prefix}${field}-error`);
    shown.textContent = /^(is|must|are|has) /.test(text) ? `${fields[field]} ${text}.`
      : `${text.charAt(0).toUpperCase()}${text.slice(1)}.`;
    shown.hidden = false;
    $(`${prefix}${field}`).setAttribute("aria-invalid", "true");
  };
  const clear = () => {
    for (const field of Object.keys(fields)) {
      $(`${prefix}${field}-error`).hidden = true;
      $(`${prefix}${field}`).removeAttribute("aria-invalid");
    }
    $(banner).hidden = true;
  };
  const answer = (error) => {
    const problem = error.problem || {};
    const errors = Array.isArray(problem.errors) ? problem.errors : [];
    const byField = errors.filter((e) => e && Object.hasOwn(fields, e.field));
    for (const found of byField) show(found.field, found.message);
    if (byField.length && byField.length === errors.length) $(`${prefix}${byField[0].field}`).focus();
    else showError($(banner), error);
  };
  return { show, clear, answer };
}

// One button's action: the button off while it runs, its problem shown in the page's error banner (or `shown`).
export async function act(button, run, shown = $("error")) {
  button.disabled = true;
  shown.hidden = true;
  try { await run(); } catch (error) { showError(shown, error); } finally { button.disabled = false; }
}
