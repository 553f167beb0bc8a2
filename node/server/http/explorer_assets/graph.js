// The lineage graph as SVG: datasets in columns by generation (parents left, children right),
// edges parent -> child, every node a link to its dataset page. No layout library: a layered
// placement is enough for lineage, which is a DAG of modest size around one dataset.

import { s } from "./dom.js";

export const MAX_GRAPH_NODES = 60;
const COLUMN = 230;
const ROW = 64;
const WIDTH = 180;
const HEIGHT = 40;
const PAD = 16;

/**
 * nodes: [{id, layer, label, verified, focus}], edges: [{from, to}]; href(id) -> link.
 * Returns the <svg> element.
 */
export function lineageSvg(nodes, edges, href) {
  const layers = [...new Set(nodes.map((n) => n.layer))].sort((a, b) => a - b);
  const position = new Map();
  let rows = 1;
  for (const [column, layer] of layers.entries()) {
    const members = nodes.filter((n) => n.layer === layer).sort((a, b) => a.label.localeCompare(b.label));
    rows = Math.max(rows, members.length);
    members.forEach((n, row) => position.set(n.id, { x: PAD + column * COLUMN, y: PAD + row * ROW }));
  }
  const width = PAD * 2 + (layers.length - 1) * COLUMN + WIDTH;
  const height = PAD * 2 + (rows - 1) * ROW + HEIGHT;
  const edgeEls = edges
    .filter((e) => position.has(e.from) && position.has(e.to))
    .map((e) => {
      const a = position.get(e.from);
      const b = position.get(e.to);
      const x1 = a.x + WIDTH;
      const y1 = a.y + HEIGHT / 2;
      const x2 = b.x;
      const y2 = b.y + HEIGHT / 2;
      const bend = Math.max(40, Math.abs(x2 - x1) / 2);
      return s("path", {
        class: "edge",
        "data-from": e.from,
        "data-to": e.to,
        d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
        "marker-end": "url(#arrow)",
      });
    });
  const nodeEls = nodes.map((n) => {
    const p = position.get(n.id);
    const classes = ["node", n.focus ? "focus" : "", n.verified ? "verified" : "unverified"].join(" ");
    return s(
      "a",
      { href: href(n.id), class: "node-link" },
      s(
        "g",
        { class: classes, "data-dataset": n.id, "data-verified": n.verified ? "true" : "false", transform: `translate(${p.x},${p.y})` },
        s("title", {}, `${n.label}\n${n.id}${n.verified ? "" : "\n(not verified)"}`),
        s("rect", { width: WIDTH, height: HEIGHT, rx: 6, ry: 6 }),
        s("text", { x: 10, y: 17, class: "label" }, n.label.length > 24 ? `${n.label.slice(0, 23)}…` : n.label),
        s("text", { x: 10, y: 32, class: "hash" }, `${n.id.slice(0, 16)}…${n.verified ? " ✓" : ""}`),
      ),
    );
  });
  return s(
    "svg",
    { class: "lineage", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "lineage graph" },
    s(
      "defs",
      {},
      s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto" }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" })),
    ),
    edgeEls,
    nodeEls,
  );
}
