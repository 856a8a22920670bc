// The cluster view's live charts, drawn as plain SVG from GET /api/charts (one point a
// second, the last five minutes): checkouts/s by outcome, p50/p99 checkout latency,
// queue depth, executions/s by replica with a dashed marker at each leader change.
import { getJSON, h, s } from "/static/dom.js";

const CHARTS_MS = 1000;
const W = 360, H = 120, PAD = { l: 40, r: 8, t: 8, b: 18 };
const COLORS = ["#2f7d32", "#c62828", "#6d4c41", "#ef6c00", "#1565c0", "#6a1b9a", "#00838f", "#ad1457"];

// [chart id, title, unit, point -> {series name: value}]
const CHARTS = [
  ["chart-checkouts", "Checkouts per second by outcome", "/s", (p) => p.checkoutsPerS],
  ["chart-latency", "Checkout latency p50 / p99", "ms", (p) => ({
    p50: p.latencyP50S == null ? null : p.latencyP50S * 1000,
    p99: p.latencyP99S == null ? null : p.latencyP99S * 1000,
  })],
  ["chart-queue", "Queue depth", "", (p) => ({ depth: p.queueDepth })],
  ["chart-executions", "Executions per second by replica", "/s", (p) =>
    Object.fromEntries(Object.entries(p.executionsPerS || {}).map(([r, v]) => [`replica ${r}`, v]))],
];

function fmt(v) {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function chart(points, pick, unit, withMarkers) {
  const names = [...new Set(points.flatMap((p) => Object.keys(pick(p) || {})))].sort();
  const values = points.flatMap((p) => Object.values(pick(p) || {}).filter((v) => v != null));
  const max = Math.max(1e-9, ...values);
  const t0 = points.length ? points[0].at : 0;
  const t1 = points.length ? points[points.length - 1].at : 1;
  const x = (t) => PAD.l + ((t - t0) / Math.max(1, t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" },
    s("line", { x1: PAD.l, y1: H - PAD.b, x2: W - PAD.r, y2: H - PAD.b, stroke: "#999" }),
    s("text", { x: PAD.l - 4, y: PAD.t + 8, "text-anchor": "end", "font-size": 9 }, `${fmt(max)}${unit}`),
    s("text", { x: PAD.l - 4, y: H - PAD.b, "text-anchor": "end", "font-size": 9 }, "0"),
    s("text", { x: W - PAD.r, y: H - 4, "text-anchor": "end", "font-size": 9 }, "now"));
  if (withMarkers) {
    for (const p of points.filter((q) => q.leaderChange)) {
      svg.append(s("line", { x1: x(p.at), y1: PAD.t, x2: x(p.at), y2: H - PAD.b, stroke: "#888",
        "stroke-dasharray": "3 3", class: "leader-change" },
        s("title", {}, `leader: replica ${p.leaderChange.replica}, epoch ${p.leaderChange.epoch}`)));
    }
  }
  const legend = [];
  names.forEach((name, i) => {
    const color = COLORS[i % COLORS.length];
    let d = "";
    let pen = "M";
    for (const p of points) {
      const v = (pick(p) || {})[name];
      if (v == null) { pen = "M"; continue; }
      d += `${pen}${x(p.at).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L";
    }
    if (d) svg.append(s("path", { d, fill: "none", stroke: color, "stroke-width": 1.5, dataset: { series: name } }));
    const last = [...points].reverse().map((p) => (pick(p) || {})[name]).find((v) => v != null);
    legend.push(h("span", { class: "legend", style: `color:${color}` }, `${name} ${last == null ? "—" : fmt(last) + unit}`));
  });
  return [svg, h("div", { class: "legends" }, ...legend)];
}

export async function pollCharts() {
  try {
    const { ok, body } = await getJSON("/api/charts");
    if (ok && body) {
      const points = body.points || [];
      for (const [id, title, unit, pick] of CHARTS) {
        const el = document.getElementById(id);
        if (!el) continue;
        const peak = Math.max(0, ...points.flatMap((p) => Object.values(pick(p) || {}).filter((v) => v != null)));
        el.dataset.peak = String(peak);
        el.replaceChildren(h("h3", {}, title), ...chart(points, pick, unit, id === "chart-executions"));
      }
      document.body.dataset.chartsUpdated = String(Date.now());
    }
  } catch {
    // the orchestrator unreachable: the cluster line says so, the next poll tries again
  } finally {
    setTimeout(pollCharts, CHARTS_MS);
  }
}
