// Small helpers shared by both pages. Text is always set as text, never parsed as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export async function getJSON(url) {
  const res = await fetch(url, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  return { ok: res.ok, status: res.status, body };
}

export function errorMessage(body, status) {
  if (body && body.error && body.error.message) return body.error.message;
  return `The server answered ${status}.`;
}

// Times arrive as unix seconds, unix milliseconds or RFC 3339 strings.
export function toDate(at) {
  if (at === null || at === undefined || at === "") return null;
  if (typeof at === "number") return new Date(at > 1e12 ? at : at * 1000);
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function fmtTime(at) {
  const d = toDate(at);
  if (!d) return "";
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
}

export function fmtClock(clock) {
  return Array.isArray(clock) ? `[${clock.join(",")}]` : "—";
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : "";
}

export function money(value) {
  const n = Number(value);
  return Number.isFinite(n) ? `€${n.toFixed(2)}` : "";
}

export function executionText(execution) {
  if (!execution) return null;
  if (execution.state === "executed") {
    const by = execution.executor != null ? `executed by replica ${execution.executor}` : "executed";
    return execution.epoch != null ? `${by} (epoch ${execution.epoch})` : by;
  }
  if (execution.state === "leased") {
    return execution.executor != null ? `being executed by replica ${execution.executor}` : "being executed";
  }
  return execution.sequence != null ? `queued (#${execution.sequence})` : "queued";
}

// An SVG <defs> with one arrow head (marker `id`), for a diagram's message lines.
export function arrowDefs(id, fill) {
  return s("defs", {}, s("marker", {
    id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  }, s("path", { d: "M0,0 L10,5 L0,10 z", fill })));
}
