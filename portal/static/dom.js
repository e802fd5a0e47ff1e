// Building the page's elements: text is set as text, never as HTML, so a title from Graph or ServiceNow can never
// become markup; links go only to this connector, loopback or https.

export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "href") node.setAttribute("href", safeHref(value));
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function safeHref(value) {
  const text = String(value);
  return text.startsWith("https://") || text.startsWith("http://127.0.0.1") || text.startsWith("http://localhost")
    || text.startsWith("/") || text.startsWith("#") ? text : "#";
}

// What an action did, in a live region: read out, and kept on the page until the next one.
export function notice(content) {
  $("notice").replaceChildren(...(Array.isArray(content) ? content : [content]).filter((c) => c !== null));
}
