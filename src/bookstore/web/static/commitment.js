// An order's commitment diagram: a line for the coordinator (the leader executor),
// the decision log and each participant, and the two-phase commit's messages in the
// order the coordinator recorded them: prepare, vote, decision (to the log first),
// logged, decision to each participant, ack.
import { arrowDefs, s } from "/static/dom.js";

const LEFT = 150;
const TOP = 40;
const LANE_GAP = 62;
const STEP = 74; // one column per message
const SLANT = 58; // how far right a message travels
const KNOWN = ["coordinator", "decision-log", "books-database", "payment"];
const COLORS = { prepare: "#3b6fb6", vote: "#7a57b0", decision: "#c07a00", logged: "#8a6a00", ack: "#2f8a4c" };

// Pure placement, kept apart from drawing so it is easy to check.
export function layout(data) {
  const steps = Array.isArray(data.steps) ? data.steps : [];
  const named = new Set(steps.flatMap((st) => [st.from, st.to]));
  const lanes = [...KNOWN.filter((n) => named.has(n) || n === "coordinator"), ...[...named].filter((n) => !KNOWN.includes(n)).sort()];
  const y = (name) => TOP + lanes.indexOf(name) * LANE_GAP;
  const messages = steps.map((st, i) => ({
    ...st, rank: i, x1: LEFT + i * STEP + 10, y1: y(st.from), x2: LEFT + i * STEP + 10 + SLANT, y2: y(st.to),
  }));
  const coordinators = [...new Set(steps.map((st) => st.coordinator))];
  return {
    lanes, messages, coordinators,
    width: LEFT + Math.max(1, steps.length) * STEP + SLANT + 30,
    height: TOP + (lanes.length - 1) * LANE_GAP + 36,
  };
}

export function render(data) {
  const L = layout(data);
  const svg = s("svg", {
    class: "commitment", viewBox: `0 0 ${L.width} ${L.height}`, role: "img",
    "aria-label": `Two-phase commit of order ${data.orderId}: ${L.messages.length} messages`,
    dataset: { orderId: data.orderId || "", messages: L.messages.length },
  });
  svg.append(arrowDefs("commit-arrow", "#6b7680"));
  L.lanes.forEach((name, i) => {
    const y = TOP + i * LANE_GAP;
    const label = name === "coordinator" && L.coordinators.length
      ? `coordinator (executor ${L.coordinators.join(", ")})` : name;
    svg.append(
      s("line", { class: "lifeline", x1: LEFT - 20, y1: y, x2: L.width - 10, y2: y, dataset: { lane: name } }),
      s("text", { class: "lane-label", x: 12, y: y + 4, "font-size": 12 }, label),
    );
  });
  for (const m of L.messages) {
    const color = COLORS[m.kind] || "#6b7680";
    const label = m.detail ? `${m.kind} ${m.detail}` : m.kind;
    svg.append(s("g", { class: "message-step", dataset: { kind: m.kind, from: m.from, to: m.to, rank: m.rank, detail: m.detail || "" } },
      s("title", {}, `${m.from} → ${m.to}: ${label} (epoch ${m.epoch}, ${m.at})`),
      s("line", { class: "message", x1: m.x1, y1: m.y1, x2: m.x2, y2: m.y2, stroke: color, "marker-end": "url(#commit-arrow)" }),
      s("text", { class: "name", x: (m.x1 + m.x2) / 2, y: (m.y1 + m.y2) / 2 - 4, "font-size": 10, fill: color, "text-anchor": "middle" }, label)));
  }
  return svg;
}
