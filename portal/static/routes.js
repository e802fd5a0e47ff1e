// The Routes view (docs/design.md#connections-and-routes): the ordered rules of GET /api/routes, the first match
// deciding where each recommendation's ticket goes, read by everyone. Admins edit a draft of the list on the page (add,
// edit, move, delete: route-editor.js), preview it (POST /api/routes/preview: route-preview.js) and save it (PUT
// /api/routes with If-Match: the version read). Nothing is saved until Save succeeds; a save over someone else's is
// refused (412) and offers theirs; a problem the connector names (routes[3].set.dueInDays) shows on that rule and, in
// its editor, under that field.
import { api } from "./api.js";
import { $, el, notice } from "./dom.js";
import { showError } from "./problems.js";
import { ADMIN, can } from "./roles.js";
import { entry, rules, same, state, unsaved } from "./route-draft.js";
import { edit, focusRule, wire as wireEditor } from "./route-editor.js";
import { showPreview, wire as wirePreview } from "./route-preview.js";
import { capital, errorText, isCatchAll, locate, matchWords, ruleLabel, sentence, setWords } from "./route-words.js";
import { when } from "./words.js";

export { exist, unsaved } from "./route-draft.js";
export { dueNote } from "./route-words.js";

const BEFORE = "the default connection, its table, no assignment group, company or due date";

// A preview shown stays only when it is of the list taken (the draft just saved); any other is put away.
function take(answer, previewed = null) {
  state.version = answer.version;
  state.saved = Array.isArray(answer.routes) ? answer.routes : [];
  state.savedAt = answer.savedAt || null;
  state.savedBy = answer.savedBy || null;
  state.draft = state.saved.map((rule) => entry(structuredClone(rule)));
  state.loaded = true;
  state.preview = previewed;
  state.previewedAs = previewed ? structuredClone(state.saved) : null;
  $("routes-preview").hidden = !previewed;
  link();
}

export async function load() {
  take(await api("/api/routes"));
}

// The page's way in (next to the connections): how many rules there are.
function link() {
  const count = state.saved.length;
  $("routes-link").textContent = `Routes: ${count ? `${count} ${count === 1 ? "rule" : "rules"}` : "none yet"}`;
}

// -- the view --------------------------------------------------------------------------------------------------------
export async function open(back) {
  if (back !== undefined) state.back = back;
  $("routes-back").setAttribute("href", state.back && state.back !== "#" ? state.back : window.location.pathname);
  const admin = can(ADMIN);
  $("routes-tools").hidden = !admin;
  $("route-add").hidden = !admin || !state.loaded;  // shown once the list is read (render)
  $("routes-who").textContent = admin ? "Change the list, preview where tickets would go, then save it: nothing "
    + "changes until you save." : "Only an admin of the connector (app role Connector.Admin) can change them.";
  const tenants = api("/api/tenants").then((answer) => { state.tenants = answer.tenants || []; }, () => {});
  let failure = null;
  try {
    if (!unsaved()) await load();
  } catch (error) {
    failure = error;
  }
  await tenants;
  render();  // the view is whole before its error is shown: nothing on it offers what the error forbids
  if (failure) showError($("routes-error"), failure);
}

function render() {
  const admin = can(ADMIN);
  const catchAll = state.draft.findIndex((e) => isCatchAll(e.rule));
  $("rule-list").replaceChildren(...state.draft.map((e, i) => ruleItem(e, i, catchAll, admin)));
  $("rule-list").hidden = !state.draft.length;
  $("rules-rest").textContent = !state.draft.length ? `No rules: every ticket goes as before routes (${BEFORE}).`
    : catchAll < 0 ? `Everything else goes as before routes: ${BEFORE}.` : "";
  $("rules-rest").hidden = !state.loaded || (catchAll >= 0 && state.draft.length > 0);  // unread is not "none"
  $("route-add").hidden = !admin || !state.loaded;  // a list never read could never be saved
  $("routes-saved").textContent = !state.loaded ? "" : state.savedAt
    ? `Saved ${when(state.savedAt)}${state.savedBy ? ` by ${state.savedBy}` : ""}.` : "Never saved.";
  const changed = unsaved();
  $("routes-dirty").hidden = !changed;
  $("routes-save").disabled = !changed;
  $("routes-discard").disabled = !changed;
  $("routes-preview-button").disabled = !state.loaded;
  $("preview-stale").hidden = !state.preview || same(state.previewedAs, rules());
  // Whether what the preview shows is saved: after Save it is the list in force, before it nothing is.
  $("preview-saved").textContent = !state.preview ? "" : same(state.previewedAs, state.saved)
    ? "This is where tickets go now: the list previewed is the one saved." : "Nothing is saved yet: Save keeps this list.";
}

function ruleItem(item, i, catchAll, admin) {
  const { rule } = item;
  const savedRule = rule.id ? state.saved.find((r) => r.id === rule.id) : null;
  const tag = !savedRule ? "New" : same(savedRule, rule) ? null : "Changed";
  const line = el("p", { className: "rule-line" }, el("span", { className: "rule-match" }, matchWords(rule.match)),
    el("span", { "aria-hidden": "true" }, " → "), el("span", { className: "visually-hidden" }, ": tickets go to "),
    setWords(rule.set));
  const never = catchAll >= 0 && i > catchAll
    ? el("p", { className: "rule-never" }, `Never used: rule ${catchAll + 1} above matches everything.`) : null;
  const errors = item.errors.length ? el("ul", { className: "rule-errors" },
    ...item.errors.map((e) => el("li", {}, e.text))) : null;
  return el("li", { className: item.errors.length ? "rule invalid" : "rule", "data-key": item.key },
    el("h3", { className: "rule-name" }, `${i + 1}. `, rule.name || "Unnamed rule",
      tag ? el("span", { className: "tag" }, tag) : null),
    line, never, errors, admin ? ruleButtons(item, i) : null);
}

// Move up and down stay focusable at the ends (aria-disabled), so focus can follow a rule as it moves. Each name
// begins with the button's own text (WCAG 2.5.3: a voice user says what they see).
function ruleButtons(item, i) {
  const label = ruleLabel(item.rule, i);
  const button = (action, text, aria, run, off = false) => {
    const made = el("button", { type: "button", className: action === "delete" ? "button danger" : "button",
      "data-action": action, "aria-label": aria, "aria-disabled": off ? "true" : null }, text);
    made.addEventListener("click", () => { if (!off) run(); });
    return made;
  };
  return el("div", { className: "buttons" },
    button("edit", "Edit", `Edit ${label}`, () => edit(item.key)),
    button("up", "Move up", `Move up ${label}`, () => move(item.key, -1), i === 0),
    button("down", "Move down", `Move down ${label}`, () => move(item.key, 1), i === state.draft.length - 1),
    button("delete", "Delete", `Delete ${label}`, () => remove(item.key)));
}

function move(key, step) {
  const from = state.draft.findIndex((e) => e.key === key);
  const to = from + step;
  if (from < 0 || to < 0 || to >= state.draft.length) return;
  const [moved] = state.draft.splice(from, 1);
  state.draft.splice(to, 0, moved);
  render();
  focusRule(key, step < 0 ? "up" : "down");
  notice(`${capital(ruleLabel(moved.rule, to))} is now number ${to + 1} of ${state.draft.length} (not saved yet).`);
}

function remove(key) {
  const at = state.draft.findIndex((e) => e.key === key);
  if (at < 0) return;
  const [gone] = state.draft.splice(at, 1);
  render();
  const next = state.draft[at] || state.draft[at - 1];
  if (next) focusRule(next.key, "edit"); else $("route-add").focus();
  notice(`${capital(ruleLabel(gone.rule, at))} is deleted from the list (not saved yet).`);
}

// A refused save or preview: each problem on its rule (and its field), the rest in the banner, focus on it.
function refused(error, what) {
  for (const item of state.draft) item.errors = [];
  const banner = $("routes-error");
  if (error.status === 412 && error.problem && Array.isArray(error.problem.routes)) return stale(error.problem);
  const problems = error.problem && Array.isArray(error.problem.errors) ? error.problem.errors : [];
  if (error.status !== 400 || !problems.length) {
    showError(banner, error);
    banner.focus();
    return;
  }
  const general = [];
  const links = [];
  for (const problem of problems) {
    const where = locate(problem.field);
    const item = where && state.draft[where.index];
    if (!item) { general.push(el("li", {}, sentence(problem.field || "The list", problem.message))); continue; }
    const text = errorText(item.rule, where, problem.message);
    item.errors.push({ member: where.member, text });
    const fix = el("button", { type: "button", className: "linkish" }, `Rule ${where.index + 1}`);
    fix.addEventListener("click", () => edit(item.key, where.member));
    links.push(el("li", {}, fix, `: ${text}`));
  }
  const count = problems.length;
  banner.replaceChildren(el("strong", {}, `${what}: the connector found ${count} ${count === 1 ? "problem" : "problems"}.`),
    links.length ? " Each is shown on its rule; press one to fix it." : null,
    el("ul", { className: "problems" }, ...links, ...general));
  banner.hidden = false;
  render();
  banner.focus();
}

// Someone saved meanwhile: nothing of ours was kept. Their list replaces the draft only when asked.
function stale(current) {
  const banner = $("routes-error");
  const by = current.savedBy ? ` by ${current.savedBy}` : "";
  const at = current.savedAt ? ` ${when(current.savedAt)}` : "";
  const theirs = el("button", { type: "button", className: "button", id: "routes-theirs" }, "Load their routes");
  theirs.addEventListener("click", () => {
    take(current);
    banner.hidden = true;
    render();
    $("routes-title").focus();
    notice(`These are the routes saved${at}${by}. Make your change again on top of them, then save.`);
  });
  banner.replaceChildren(el("strong", {}, "Someone else saved the routes since you loaded them."),
    ` They were saved${at}${by}; nothing of yours is saved. Load theirs to see them (your changes here are then `
    + "dropped: make them again on top), or keep editing and copy what you need first.",
    el("span", { className: "buttons" }, theirs));
  banner.hidden = false;
  render();
  banner.focus();
}

// -- save and preview ----------------------------------------------------------------------------------------------
async function busy(button, run) {
  button.disabled = true;
  $("routes-error").hidden = true;
  try { await run(); } finally { render(); }
}

function save() {
  return busy($("routes-save"), async () => {
    const previewed = state.preview && same(state.previewedAs, rules()) ? state.preview : null;
    let answer;
    try {
      answer = await api("/api/routes", { method: "PUT", body: { routes: rules() },
        headers: { "If-Match": `"${state.version}"` } });
    } catch (error) {
      refused(error, "Nothing is saved");
      return;
    }
    take(answer, previewed);
    const count = answer.routes.length;
    // What the connector decided for the admin (a name ServiceNow matched only when case is ignored) is said too.
    const notes = (answer.notes || []).map((n) => ` ${n.message}.`).join("");
    notice(`The routes are saved: ${count} ${count === 1 ? "rule" : "rules"}. The next ticket follows them; tickets `
      + `made before stay where they are.${notes}`);
    $("notice").focus();
  });
}

function discard() {
  if (!window.confirm("Discard your changes to the routes? The saved list comes back.")) return;
  reset();
  render();
  $("routes-title").focus();
  notice("Your changes are discarded: this is the saved list.");
}

function runPreview() {
  return busy($("routes-preview-button"), async () => {
    const asked = structuredClone(rules());
    let answer;
    try {
      answer = await api("/api/routes/preview", { method: "POST", body: { routes: asked } });
    } catch (error) {
      refused(error, "Nothing to preview");
      return;
    }
    for (const item of state.draft) item.errors = [];
    state.preview = answer;
    state.previewedAs = asked;
    showPreview(answer);
    $("preview-title").focus();
  });
}

export function wire() {
  $("routes-save").addEventListener("click", save);
  $("routes-discard").addEventListener("click", discard);
  $("routes-preview-button").addEventListener("click", runPreview);
  wireEditor(render);
  wirePreview();
}

// Leaving the view drops the draft (view.js asked first when it had changes).
export function reset() {
  state.draft = state.saved.map((rule) => entry(structuredClone(rule)));
  $("routes-error").hidden = true;
}
