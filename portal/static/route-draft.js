// The routes (GET /api/routes) as the page holds them: the list saved, the admin's draft of it, and whether the two
// say the same. No DOM here: the Routes view (routes.js), its editor and its preview read and change this state.

export const state = { version: null, saved: [], savedAt: null, savedBy: null, draft: [], loaded: false, next: 1,
  tenants: [], connections: null, services: null, editing: null, preview: null, previewedAs: null, back: "#" };

// A rule of the draft, with the problems the connector named on it.
export const entry = (rule) => ({ key: state.next++, rule, errors: [] });
export const rules = () => state.draft.map((e) => e.rule);
export const exist = () => !state.loaded || state.saved.length > 0;  // unread: there may be some, so say nothing either way

// Two lists are the same when their rules say the same (members in any order; an empty match is no match; a
// match's lists are sets: the editor's boxes give categories in their own order, an API client in any).
function canonical(value, unordered = false) {
  if (Array.isArray(value)) return unordered ? [...new Set(value)].sort() : value.map((v) => canonical(v));
  if (!value || typeof value !== "object") return value;
  const kept = Object.keys(value).sort().filter((k) => value[k] !== undefined
    && !(k === "match" && !Object.keys(value[k] || {}).length) && !(k === "fields" && !Object.keys(value[k] || {}).length));
  return Object.fromEntries(kept.map((k) => [k, k === "match" && value[k] && typeof value[k] === "object"
    ? Object.fromEntries(Object.keys(value[k]).sort().map((m) => [m, canonical(value[k][m], true)]))
    : canonical(value[k])]));
}
export const same = (a, b) => JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
export const unsaved = () => state.loaded && !same(rules(), state.saved);
