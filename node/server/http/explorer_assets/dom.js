// Small DOM helpers: elements from tag, attributes and children; SVG in its namespace.

const SVG_NS = "http://www.w3.org/2000/svg";
const SVG_TAGS = new Set(["svg", "g", "path", "rect", "text", "title", "defs", "marker", "a", "line"]);

function build(ns, tag, attrs, children) {
  const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h("a", {href: "/x"}, "text", otherNode). */
export function h(tag, attrs, ...children) {
  return build(null, tag, attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  if (!SVG_TAGS.has(tag)) throw new Error(`not an SVG tag here: ${tag}`);
  return build(SVG_NS, tag, attrs, children);
}

export function short(hex, n = 12) {
  return hex.length > n ? `${hex.slice(0, n)}…` : hex;
}

export function isoTime(ms) {
  const value = Number(ms);
  if (!Number.isFinite(value) || value > 8.64e15) return String(ms);
  return new Date(value).toISOString().replace(".000Z", "Z");
}

export function table(rows) {
  return h(
    "table",
    { class: "facts" },
    rows.filter(Boolean).map(([label, value]) => h("tr", {}, h("th", {}, label), h("td", {}, value))),
  );
}
