// The review's charts, drawn by hand as SVG (no chart library): each is role="img" with a title and a description
// that say what it shows in words, and the numbers are in a real table beside it (review.js). Series differ by
// line style and fill pattern as well as by colour, so a black-and-white print still tells them apart (app.css).
const NS = "http://www.w3.org/2000/svg";

export function svgEl(tag, attrs = {}, text = null) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = String(text);
  return node;
}

export const points = (value) => (typeof value === "number" ? String(Math.round(value * 100) / 100) : "–");
const day = (iso) => Date.parse(`${String(iso).slice(0, 10)}T00:00:00Z`);
const short = (iso) => new Date(day(iso)).toLocaleDateString("en", { month: "short", day: "numeric", timeZone: "UTC" });

// An empty chart with its words: the title (what it is) and the description (what it says).
function frame(svg, width, height, title, desc) {
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  const id = svg.id;
  svg.setAttribute("aria-labelledby", `${id}-t`);
  svg.setAttribute("aria-describedby", `${id}-d`);
  svg.replaceChildren(svgEl("title", { id: `${id}-t` }, title), svgEl("desc", { id: `${id}-d` }, desc));
}

const COMPARED = ["compare-a", "compare-b", "compare-c"];  // dashed, dotted, dash-dot (app.css)
// Secure Score's comparison bases (averageComparativeScores), in words, and shorter beside a chart's lines; another
// basis shows as Graph names it.
const BASES = { AllTenants: ["All organizations", "All"], TotalSeats: ["Organizations of similar size", "Similar size"],
  IndustryTypes: ["Organizations in the same industry", "Industry"] };
export const basisName = (basis) => (BASES[basis] || [String(basis)])[0];
const shortName = (basis) => (BASES[basis] || [String(basis).slice(0, 14)])[1] || String(basis).slice(0, 14);

// The score over the period as a line of its percent (of the day's maximum), with each comparative average as a
// horizontal line of its own style, each named at its right end (names moved apart where lines are close). Secure
// Score's `averageScore` is a percent, not points: the live answer docs/api.md#a-tenants-review cites (a tenant of
// 815 of 1,376 points beside averages of 52.86 and 48.1) fits no other reading, so both share one 0-100 scale.
const percentOf = (s) => (typeof s.percent === "number" ? s.percent
  : s.max ? Math.round((1000 * s.current) / s.max) / 10 : null);
export const pct = (value) => (typeof value === "number" ? `${points(value)}%` : "–");

export function drawScore(svg, review, wide = null) {
  const score = (review.score || []).filter((s) => typeof percentOf(s) === "number");
  const compared = (review.comparative || []).filter((c) => typeof c.averageScore === "number");
  const first = score[0], last = score[score.length - 1];
  const words = score.length
    ? `Secure Score from ${pct(percentOf(first))} on ${first.date} (${points(first.current)} points) to `
      + `${pct(percentOf(last))} on ${last.date} (${points(last.current)} of ${points(last.max)} points).`
    : "No Secure Score was read in this period.";
  const averages = compared.map((c) => `${basisName(c.basis)}: average ${pct(c.averageScore)}`).join("; ");
  // As wide as it is shown (a phone's too), so its words keep their size: 320 to 640 units.
  const shown = wide || svg.getBoundingClientRect().width || 640;
  const width = Math.round(Math.min(640, Math.max(320, shown))), height = 240;
  frame(svg, width, height, "Secure Score over the period", averages ? `${words} ${averages}.` : words);
  if (!score.length) {
    svg.append(svgEl("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "note" },
      "No score read in this period"));
    return;
  }
  const left = 40, top = 12, w = width - left - 140, h = height - top - 26;
  const start = day(review.from || first.date), end = Math.max(day(review.to || last.date), start + 1);
  const x = (date) => left + ((day(date) - start) / (end - start)) * w;
  const y = (v) => top + h - (Math.min(100, Math.max(0, v)) / 100) * h;
  for (const v of [0, 50, 100]) {
    svg.append(svgEl("line", { x1: left, x2: left + w, y1: y(v), y2: y(v), class: "grid" }),
      svgEl("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, `${v}%`));
  }
  svg.append(svgEl("text", { x: left, y: height - 6 }, short(review.from || first.date)),
    svgEl("text", { x: left + w, y: height - 6, "text-anchor": "end" }, short(review.to || last.date)));
  const labels = [{ at: y(percentOf(last)), text: `This tenant ${pct(percentOf(last))}`, kind: "label strong" }];
  compared.forEach((c, i) => {
    const at = y(c.averageScore);
    svg.append(svgEl("line", { x1: left, x2: left + w, y1: at, y2: at, class: `average ${COMPARED[i % 3]}` }));
    labels.push({ at, text: `${shortName(c.basis)} ${pct(c.averageScore)}`, kind: "label" });
  });
  svg.append(svgEl("polyline", { points: score.map((s) => `${x(s.date).toFixed(1)},${y(percentOf(s)).toFixed(1)}`)
    .join(" "), class: "score" }));
  if (score.length === 1) {
    svg.append(svgEl("circle", { cx: x(first.date), cy: y(percentOf(first)), r: 3, class: "dot" }));
  }
  let floor = -Infinity;
  for (const label of labels.sort((a, b) => a.at - b.at)) {
    floor = Math.max(label.at + 4, floor + 14);
    svg.append(svgEl("text", { x: left + w + 6, y: floor, class: label.kind }, label.text));
  }
}

// Bars side by side, each with its value over it: [{label, value, tone}].
export function drawBars(svg, bars, title, desc) {
  const width = 320, height = 180, base = 150, tall = 120;
  frame(svg, width, height, title, desc);
  const most = Math.max(...bars.map((b) => b.value || 0), 1);
  const step = width / bars.length;
  bars.forEach((b, i) => {
    const value = b.value || 0;
    const hgt = (value / most) * tall;
    const x = i * step + step * 0.2;
    svg.append(svgEl("rect", { x, y: base - hgt, width: step * 0.6, height: Math.max(hgt, 1), class: `bar ${b.tone}` }),
      svgEl("text", { x: x + step * 0.3, y: base - hgt - 6, "text-anchor": "middle", class: "value" },
        b.shown === undefined ? value : b.shown),
      svgEl("text", { x: x + step * 0.3, y: height - 10, "text-anchor": "middle" }, b.label));
  });
  svg.append(svgEl("line", { x1: 0, x2: width, y1: base, y2: base, class: "base" }));
}

// Horizontal bars, one per item (its rank in front): the top open actions by points.
export function drawRanked(svg, items, title, desc) {
  const row = 22, width = 320, height = Math.max(items.length, 1) * row + 8;
  frame(svg, width, height, title, desc);
  if (!items.length) {
    svg.append(svgEl("text", { x: width / 2, y: 18, "text-anchor": "middle", class: "note" }, "None open"));
    return;
  }
  const most = Math.max(...items.map((it) => it.value || 0), 1);
  items.forEach((it, i) => {
    const y = 4 + i * row;
    const wide = ((it.value || 0) / most) * (width - 80);
    svg.append(svgEl("text", { x: 18, y: y + 15, "text-anchor": "end" }, i + 1),
      svgEl("rect", { x: 26, y: y + 3, width: Math.max(wide, 1), height: row - 8, class: "bar open" }),
      svgEl("text", { x: 30 + wide, y: y + 15, class: "value" }, points(it.value)));
  });
}
