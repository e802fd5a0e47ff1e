// Times and results said the same way wherever the page shows them.

export function when(iso) {
  const moment = new Date(iso);
  return Number.isNaN(moment.getTime()) ? iso : moment.toLocaleString();
}

// What a refresh from Secure Score did to the tickets, in words: resolved, reopened, new, notes written.
export function refreshWords(result) {
  const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  const done = [
    result.resolved ? `${count(result.resolved, "ticket", "tickets")} resolved (their improvement actions are completed)` : null,
    result.reopened ? `${count(result.reopened, "ticket", "tickets")} reopened (regressed)` : null,
    result.recreated ? `${count(result.recreated, "new ticket", "new tickets")} for regressed actions` : null,
    result.written ? `${count(result.written, "note", "notes")} written to Secure Score` : null].filter(Boolean);
  return done.length ? `: ${done.join(", ")}.` : "; no ticket changed.";
}

// A tenant as the page names it: its name from GET /api/tenants (`tenants`), the home tenant as "This organization"
// (with its own name beside when it has one), an unknown id as itself.
export function tenantName(tenants, id) {
  const found = tenants.find((t) => (t.home ? "home" : t.id) === id);
  if (id === "home") return found && found.name && !/^this organi[sz]ation$/i.test(found.name)
    ? `${found.name} (this organization)` : "This organization";
  return found ? found.name || id : id;
}
