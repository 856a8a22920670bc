// The space-time diagram of one order: a horizontal line per checkout service,
// time flowing to the right, its events placed in a linear extension of their
// vector clocks (sum of the entries, then the time the report arrived), and
// after each event the clock-carrying messages to the two other services, each
// drawn to the first event of the receiver whose clock includes it.
import { arrowDefs, fmtClock, s } from "/static/dom.js";

export const LANES = [
  { service: "transaction-verification", short: "TV", color: "var(--tv)" },
  { service: "fraud-detection", short: "FD", color: "var(--fd)" },
  { service: "suggestions", short: "SUG", color: "var(--sug)" },
];

const LEFT = 150; // room for the lane labels
const STEP = 112; // one column per event
const TOP = 56;
const LANE_GAP = 104;
const R = 14;
const SHORT = 46; // a message no later event receives is drawn this long

const laneOf = (service) => LANES.findIndex((l) => l.service === service);
const sum = (clock) => clock.reduce((a, b) => a + b, 0);
const leq = (a, b) => a.every((x, i) => x <= b[i]);
const atOf = (ev) => (typeof ev.at === "number" ? ev.at : Date.parse(ev.at) / 1000 || 0);

function validClock(c) {
  return Array.isArray(c) && c.length === 3 && c.every((x) => Number.isInteger(x) && x >= 0);
}

// Pure placement, kept apart from drawing so it is easy to check.
export function layout(order) {
  const events = (order.events || [])
    .filter((ev) => validClock(ev.clock) && laneOf(ev.service) >= 0)
    .map((ev, i) => ({ ...ev, index: i }))
    .sort((a, b) => sum(a.clock) - sum(b.clock) || atOf(a) - atOf(b) || a.index - b.index)
    .map((ev, rank) => ({
      ...ev, rank, lane: laneOf(ev.service),
      x: LEFT + (rank + 0.5) * STEP, y: TOP + laneOf(ev.service) * LANE_GAP,
    }));

  const messages = [];
  for (const ev of events) {
    for (let lane = 0; lane < LANES.length; lane += 1) {
      if (lane === ev.lane) continue;
      // The arrow ends at the first event of the receiver whose clock shows this
      // one (it had merged the message by then); if none does, a short stub.
      const receiver = events.find((o) => o.lane === lane && o.rank > ev.rank && leq(ev.clock, o.clock));
      const y = TOP + lane * LANE_GAP;
      const dx = receiver ? receiver.x - ev.x : SHORT;
      const shrink = receiver ? R + 3 : 0;
      const len = Math.hypot(dx, y - ev.y);
      messages.push({
        from: ev.event, toService: LANES[lane].service, toEvent: receiver ? receiver.event : null,
        x1: ev.x + (dx / len) * (R + 1), y1: ev.y + ((y - ev.y) / len) * (R + 1),
        x2: ev.x + dx - (dx / len) * shrink, y2: y - ((y - ev.y) / len) * shrink,
      });
    }
  }

  const cancelClocks = (order.cancel && order.cancel.clocks) || null;
  let final = [0, 0, 0];
  const merge = (c) => { final = final.map((v, i) => Math.max(v, c[i])); };
  for (const ev of events) merge(ev.clock);
  if (cancelClocks) for (const c of Object.values(cancelClocks)) if (validClock(c)) merge(c);
  if (validClock(order.vectorClock)) merge(order.vectorClock);
  const endX = LEFT + (events.length + 0.5) * STEP;
  return {
    events, messages,
    end: { x: endX, final, cancel: cancelClocks },
    width: endX + 190,
    height: TOP + (LANES.length - 1) * LANE_GAP + 64,
  };
}

export function render(order) {
  const L = layout(order);
  const svg = s("svg", {
    class: "spacetime", viewBox: `0 0 ${L.width} ${L.height}`, role: "img",
    "aria-label": `Space-time diagram of order ${order.orderId}: ${L.events.length} events`,
    dataset: { orderId: order.orderId || "", events: L.events.length },
  });
  svg.append(arrowDefs("arrow", "#9aa3ad"));

  LANES.forEach((lane, i) => {
    const y = TOP + i * LANE_GAP;
    svg.append(
      s("line", { class: "lifeline", x1: LEFT - 24, y1: y, x2: L.end.x, y2: y, dataset: { service: lane.service } }),
      s("text", { class: "lane-label", x: 12, y: y - 4, fill: lane.color }, lane.short),
      s("text", { x: 12, y: y + 12, "font-size": 10, fill: "#5c6670" }, lane.service),
    );
  });

  for (const m of L.messages) {
    svg.append(s("line", {
      class: "message", x1: m.x1, y1: m.y1, x2: m.x2, y2: m.y2, "marker-end": "url(#arrow)",
      dataset: { from: m.from, toService: m.toService, toEvent: m.toEvent || "" },
    }));
  }

  for (const ev of L.events) {
    const color = LANES[ev.lane].color;
    const above = ev.lane === 0;
    svg.append(s(
      "g",
      {
        class: `event${ev.ok === false ? " failed" : ""}`, tabindex: 0,
        dataset: {
          event: ev.event, service: ev.service, clock: ev.clock.join(","), x: ev.x.toFixed(1), y: ev.y,
          rank: ev.rank, ok: ev.ok !== false,
        },
      },
      s("title", {}, `${ev.event} ${ev.name || ""} on ${ev.service}, clock ${fmtClock(ev.clock)}` +
        `${ev.ok === false ? ` — failed: ${ev.reason || ""}` : ""}${ev.answeredBy ? ` (answered by ${ev.answeredBy})` : ""}`),
      s("circle", { cx: ev.x, cy: ev.y, r: R, fill: color }),
      s("text", { class: "letter", x: ev.x, y: ev.y }, ev.event),
      s("text", { class: "clock", x: ev.x, y: above ? ev.y - R - 8 : ev.y + R + 15 }, fmtClock(ev.clock)),
      s("text", { class: "name", x: ev.x, y: above ? ev.y - R - 22 : ev.y + R + 28 }, ev.name || ""),
    ));
  }

  const bottom = TOP + (LANES.length - 1) * LANE_GAP;
  const end = s("g", { class: "end", dataset: { final: L.end.final.join(","), cancelled: Boolean(L.end.cancel) } });
  end.append(s("line", { x1: L.end.x, y1: TOP - 22, x2: L.end.x, y2: bottom + 22 }));
  if (L.end.cancel) {
    LANES.forEach((lane, i) => {
      const c = L.end.cancel[lane.service];
      if (!validClock(c)) return;
      const y = TOP + i * LANE_GAP;
      end.append(
        s("path", { class: "cancel-mark", d: `M${L.end.x - 6},${y - 6} l12,12 M${L.end.x + 6},${y - 6} l-12,12` }),
        s("text", { x: L.end.x + 12, y: y + 4, fill: "#b3261e" }, `cancel ${fmtClock(c)}`),
      );
    });
    end.append(s("text", { x: L.end.x + 12, y: bottom + 40 }, `final ${fmtClock(L.end.final)}`));
  } else {
    end.append(
      s("text", { x: L.end.x + 10, y: TOP + LANE_GAP - 8, "font-weight": 700 }, "final clock"),
      s("text", { x: L.end.x + 10, y: TOP + LANE_GAP + 8 }, fmtClock(L.end.final)),
    );
  }
  svg.append(end);
  return svg;
}
