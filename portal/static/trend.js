// The Secure Score's 90-day trend: an SVG line drawn from the history GET /api/recommendations gives, with its
// words in the SVG's title for a screen reader.
import { $ } from "./dom.js";

export function drawTrend(history) {
  const svg = $("trend");
  const title = $("trend-title");
  svg.replaceChildren(title);
  const points = history.filter((h) => typeof h.current === "number");
  if (points.length < 2) { title.textContent = "No Secure Score history yet"; return; }
  const top = Math.max(...points.map((h) => h.max || h.current), 1);
  const x = (i) => (i / (points.length - 1)) * 300;
  const y = (v) => 78 - (v / top) * 74;
  const line = points.map((h, i) => `${x(i).toFixed(1)},${y(h.current).toFixed(1)}`).join(" ");
  const ns = "http://www.w3.org/2000/svg";
  const area = document.createElementNS(ns, "polygon");
  area.setAttribute("class", "area");
  area.setAttribute("points", `0,80 ${line} 300,80`);
  const stroke = document.createElementNS(ns, "polyline");
  stroke.setAttribute("points", line);
  svg.append(area, stroke);
  const first = points[0], last = points[points.length - 1];
  title.textContent = `Secure Score from ${first.current} on ${first.date} to ${last.current} on ${last.date}, `
    + `out of ${last.max}`;
  $("trend-caption").textContent = `${first.date} to ${last.date}`;
}
