// A Secure Score refresh queued per tenant (the 202 of POST /api/recommendations/refresh, or the timer's fan-out,
// docs/admin-guide.md 10.5a): "Refreshing: X of Y tenants" from GET /api/tenants' `refreshing` (docs/api.md#tenants),
// in its own live region, read again every few seconds while it runs; when every queued tenant has its outcome, the
// view is read again and the region says so.
import { $, el } from "./dom.js";

const POLL = 3000;  // milliseconds between reads while a refresh runs
let timer = null;
let running = false;
let tick = async () => {};  // reads the tenants again (and so calls show)
let finished = async () => {};  // reads again what the view shows

export function wire(onTick, onFinished) {
  tick = onTick;
  finished = onFinished;
}

const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;

// The 202 of POST /api/recommendations/refresh, in words.
export function queuedWords(result) {
  return `Secure Score refresh queued for ${count(result.queued, "tenant", "tenants")}: each is read on its own, and `
    + "its row shows it as it lands.";
}

// Each answer of GET /api/tenants comes here: while `refreshing` is set, it is shown and read again.
export function show(refreshing) {
  const region = $("refresh-progress");
  window.clearTimeout(timer);
  if (refreshing) {
    running = true;
    const failed = refreshing.failed ? `; ${count(refreshing.failed, "tenant", "tenants")} failed (see Health)` : "";
    region.replaceChildren(el("strong", {}, `Refreshing: ${refreshing.done} of ${count(refreshing.due, "tenant",
      "tenants")}`), failed, el("progress", { max: refreshing.due, value: refreshing.done, "aria-hidden": "true" }));
    timer = window.setTimeout(again, POLL);
  } else if (running) {
    running = false;
    region.replaceChildren("The queued refresh is done: every tenant has its outcome (each row's Health says it).");
    finished();
  }
}

async function again() {
  try {
    await tick();
  } catch {
    timer = window.setTimeout(again, POLL * 2);  // the connector did not answer: try again, a little later
  }
}
