// An order's replication diagram: a horizontal line per books-database replica,
// and for each of the order's operations (reserve, commit, release) at its log
// position: the primary appending it, the Append to each backup storing it, the
// acknowledgement back to the primary, and every replica applying it once committed.
import { arrowDefs, s } from "/static/dom.js";

const LEFT = 130; // room for the lane labels
const TOP = 58;
const LANE_GAP = 70;
const R = 9;
const COLUMN = { appended: 0, stored: 1, acked: 2, applied: 3 };
const COLUMN_GAP = 70;
const GROUP = 4 * COLUMN_GAP + 50; // one operation's columns and a margin
const COLORS = { appended: "#3b6fb6", stored: "#7a57b0", acked: "#c07a00", applied: "#2f8a4c" };

// Pure placement, kept apart from drawing so it is easy to check.
export function layout(data) {
  const steps = Array.isArray(data.steps) ? data.steps : [];
  const replicas = [...new Set([...(data.answered || []), ...steps.map((st) => st.replicaId)])].sort((a, b) => a - b);
  const laneOf = (id) => replicas.indexOf(id);
  const positions = [...new Set(steps.map((st) => st.index))].sort((a, b) => a - b);
  const groupOf = (index) => positions.indexOf(index);
  const dots = steps.filter((st) => COLUMN[st.kind] !== undefined).map((st) => ({
    ...st,
    x: LEFT + groupOf(st.index) * GROUP + COLUMN[st.kind] * COLUMN_GAP + 30,
    y: TOP + laneOf(st.replicaId) * LANE_GAP,
  }));
  const messages = [];
  for (const stored of dots.filter((d) => d.kind === "stored")) {
    const from = dots.find((d) => d.kind === "appended" && d.index === stored.index);
    if (from) messages.push({ kind: "append", index: stored.index, to: stored.replicaId, x1: from.x, y1: from.y, x2: stored.x, y2: stored.y });
    const ack = dots.find((d) => d.kind === "acked" && d.index === stored.index && d.peer === stored.replicaId);
    if (ack) messages.push({ kind: "ack", index: stored.index, to: ack.replicaId, x1: stored.x, y1: stored.y, x2: ack.x, y2: ack.y });
  }
  const groups = positions.map((index) => {
    const first = steps.find((st) => st.index === index);
    return { index, op: first.op, view: first.view, x: LEFT + groupOf(index) * GROUP + 30 };
  });
  return {
    replicas, dots, messages, groups,
    width: LEFT + Math.max(1, positions.length) * GROUP + 20,
    height: TOP + Math.max(0, replicas.length - 1) * LANE_GAP + 40,
  };
}

function shorten(m) {
  const dx = m.x2 - m.x1;
  const dy = m.y2 - m.y1;
  const len = Math.hypot(dx, dy) || 1;
  return { x1: m.x1 + (dx / len) * (R + 1), y1: m.y1 + (dy / len) * (R + 1), x2: m.x2 - (dx / len) * (R + 3), y2: m.y2 - (dy / len) * (R + 3) };
}

export function render(data) {
  const L = layout(data);
  const svg = s("svg", {
    class: "replication", viewBox: `0 0 ${L.width} ${L.height}`, role: "img",
    "aria-label": `Replication of order ${data.orderId}: ${L.dots.length} steps on ${L.replicas.length} replicas`,
    dataset: { orderId: data.orderId || "", steps: L.dots.length },
  });
  svg.append(arrowDefs("rep-arrow", "#9aa3ad"));
  L.replicas.forEach((id, i) => {
    const y = TOP + i * LANE_GAP;
    svg.append(
      s("line", { class: "lifeline", x1: LEFT - 20, y1: y, x2: L.width - 10, y2: y, dataset: { replicaId: id } }),
      s("text", { class: "lane-label", x: 12, y: y + 4 }, `replica ${id}`),
    );
  });
  for (const g of L.groups) {
    svg.append(s("text", { class: "name", x: g.x - 10, y: 22, "font-size": 12, "font-weight": 700 },
      `${g.op} at position ${g.index} (view ${g.view})`));
  }
  for (const m of L.messages) {
    const p = shorten(m);
    svg.append(s("line", { class: `message ${m.kind}`, ...p, "marker-end": "url(#rep-arrow)", dataset: { kind: m.kind, index: m.index, to: m.to } }));
  }
  for (const d of L.dots) {
    svg.append(s("g", { class: "step", dataset: { kind: d.kind, replicaId: d.replicaId, index: d.index, peer: d.peer ?? "" } },
      s("title", {}, `replica ${d.replicaId} ${d.kind} the ${d.op} at position ${d.index}${d.peer ? ` (held by replica ${d.peer})` : ""}`),
      s("circle", { cx: d.x, cy: d.y, r: R, fill: COLORS[d.kind] }),
      s("text", { class: "name", x: d.x, y: d.y + R + 13 }, d.kind === "acked" ? `ack ${d.peer}` : d.kind)));
  }
  return svg;
}
