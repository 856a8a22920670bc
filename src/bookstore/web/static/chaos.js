// The fault panel of the cluster view, shown only when the orchestrator serves
// /api/chaos (`bookstore up --chaos`): per process kill, pause 5 s, restart,
// isolate, heal; a partition editor for a replica group; "Heal all"; the load
// button; the scenarios with their audit; every change the launcher made.
import { errorMessage, fmtTime, getJSON, h } from "/static/dom.js";

const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);
const GROUPS = { executors: "order-executor-", "database replicas": "books-database-" };

async function post(path, body) {
  const res = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body || {}),
  });
  let answer = null;
  try { answer = await res.json(); } catch { answer = null; }
  $("chaos-message").textContent = res.ok ? "" : errorMessage(answer, res.status);
  refresh();
}

const fault = (op, extra) => post("/api/chaos/faults", { op, ...extra });

function processRow(p) {
  const act = (label, op, extra) => h("button", {
    class: "secondary small", type: "button", dataset: { action: op, process: p.name },
    onclick: () => fault(op, { name: p.name, ...extra }),
  }, label);
  return h("tr", { dataset: { process: p.name, state: p.state } },
    h("td", {}, h("span", { class: `dot ${p.state === "running" ? "up" : "down"}` }), h("strong", {}, p.name)),
    h("td", {}, p.state), h("td", { class: "mono" }, p.pid ?? "—"),
    h("td", { class: "chaos-actions" },
      act("kill", "kill"), act("pause 5 s", "pause", { seconds: 5 }), act("restart", "restart"),
      act("isolate", "isolate"), act("heal", "heal")));
}

function partitionEditor(processes) {
  const groups = Object.entries(GROUPS)
    .map(([label, prefix]) => [label, processes.filter((p) => p.name.startsWith(prefix)).map((p) => p.name)])
    .filter(([, members]) => members.length > 1);
  if (!groups.length) return h("p", { class: "empty" }, "No replica group to split.");
  const select = h("select", { id: "partition-group", "aria-label": "Replica group" },
    groups.map(([label]) => h("option", { value: label }, label)));
  const sides = h("div", { id: "partition-sides", class: "chaos-sides" });
  const draw = () => {
    const members = groups.find(([label]) => label === select.value)[1];
    sides.replaceChildren(...members.map((name, i) => h("label", {},
      `${name} `, h("select", { dataset: { member: name } },
        h("option", { value: "A", selected: i < members.length / 2 }, "side A"),
        h("option", { value: "B", selected: i >= members.length / 2 }, "side B")))));
  };
  select.addEventListener("change", draw);
  draw();
  const split = () => {
    const pick = (side) => [...sides.querySelectorAll("select")].filter((s) => s.value === side).map((s) => s.dataset.member);
    fault("partition", { sides: [pick("A"), pick("B")] });
  };
  return h("div", { class: "chaos-partition" }, select, sides,
    h("button", { type: "button", id: "partition-button", onclick: split }, "Partition"));
}

// One message rule between two processes: a slow link (delay), "down" (refuse) or drop.
function ruleEditor(processes) {
  const names = ["*", ...processes.map((p) => p.name)];
  const pick = (id, label) => h("label", {}, `${label} `,
    h("select", { id }, names.map((n) => h("option", { value: n }, n === "*" ? "any process" : n))));
  const apply = () => fault("rule", {
    src: $("rule-src").value, dst: $("rule-dst").value, action: $("rule-action").value,
    delayMs: Number($("rule-ms").value) || 0,
  });
  return h("div", { class: "chaos-load" }, pick("rule-src", "from"), pick("rule-dst", "to"),
    h("select", { id: "rule-action", "aria-label": "What happens to the messages" },
      h("option", { value: "delay" }, "delay (slow link)"), h("option", { value: "refuse" }, "refuse (down)"),
      h("option", { value: "drop" }, "drop")),
    h("label", {}, h("input", { id: "rule-ms", type: "number", min: 0, value: 200, style: "width:5em" }), " ms"),
    h("button", { type: "button", id: "rule-button", onclick: apply }, "Apply"));
}

function auditList(audit) {
  if (!audit) return null;
  const rows = [["acknowledged", audit.acknowledged], ["executed", audit.executed], ["rejected", audit.rejected],
    ["unknown", audit.unknown], ["lost", audit.lost], ["doubled", audit.doubled],
    ["longest time without an execution", `${audit.longestGapS} s`]];
  return h("dl", { class: "chaos-audit", id: "chaos-audit" },
    rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { audit: k } }, v)]));
}

function runStatus(load, scenario) {
  const parts = [];
  if (scenario) {
    parts.push(h("p", {}, h("strong", {}, `scenario ${scenario.name}`), scenario.done ? " — done" : " — running…",
      scenario.error ? h("span", { class: "error-text" }, ` ${scenario.error}`) : null));
    parts.push(h("ol", { class: "chaos-steps" }, scenario.steps.map((s) => h("li", {}, s))));
    load = scenario.load;
  }
  if (load) {
    const outcomes = Object.entries(load.outcomes || {}).map(([k, v]) => `${v} ${k}`).join(", ");
    parts.push(h("p", { id: "load-status" }, `load: ${load.sent} sent at ${load.rate}/s (${outcomes || "none answered yet"})`,
      load.done ? " — audited" : " — running…"));
    parts.push(auditList(load.audit));
  }
  return parts;
}

function render(state) {
  const launcher = state.launcher || {};
  const processes = launcher.processes || [];
  // Rows are rebuilt only when something in them changed, so a click never lands on a
  // button that is being replaced.
  const table = $("chaos-processes");
  const shown = JSON.stringify([processes, launcher.error]);
  if (table.dataset.shown !== shown) {
    table.dataset.shown = shown;
    table.replaceChildren(...(processes.length ? processes.map(processRow)
      : [h("tr", {}, h("td", { colspan: 4, class: "empty" }, launcher.error || "No processes."))]));
  }
  const key = processes.map((p) => p.name).join(",");
  const holder = $("chaos-partition");
  if (holder.dataset.key !== key) {
    holder.dataset.key = key;
    holder.replaceChildren(partitionEditor(processes));
    $("chaos-rule-editor").replaceChildren(ruleEditor(processes));
  }
  const rules = launcher.rules || [];
  $("chaos-rules").replaceChildren(...(rules.length ? rules.map((r) => h("li", {},
    `${r.action}${r.action === "delay" ? ` ${r.delayMs} ms` : ""} ${r.src} → ${r.dst}`)) : [h("li", { class: "empty" }, "No message faults.")]));
  $("chaos-changes").replaceChildren(...[...(launcher.changes || [])].reverse().slice(0, 12).map((c) =>
    h("li", {}, h("span", { class: "muted mono" }, fmtTime(c.at)), ` ${c.what}`)));
  const buttons = $("chaos-scenarios"); // drawn once
  if (!buttons.childElementCount) {
    buttons.replaceChildren(...(state.scenarios || []).map((s) => h("button", {
      type: "button", class: "secondary", title: s.what, dataset: { scenario: s.name },
      onclick: () => post(`/api/chaos/scenarios/${encodeURIComponent(s.name)}`),
    }, s.name)));
  }
  $("chaos-run").replaceChildren(...runStatus(state.load, state.scenario).filter(Boolean));
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  const { ok, body } = await getJSON("/api/chaos").catch(() => ({ ok: false }));
  if (ok && body) render(body);
  timer = setTimeout(refresh, POLL_MS);
}

function panel() {
  const number = (id, value, label, max) => h("label", {}, `${label} `,
    h("input", { id, type: "number", min: 1, max, value, style: "width:5em" }));
  return h("section", { class: "panel span-12 chaos", id: "chaos-panel", "aria-labelledby": "chaos-title" },
    h("h2", { id: "chaos-title" }, "Fault panel ", h("small", {}, "chaos is on: break it on purpose")),
    h("p", { class: "error-text", id: "chaos-message", role: "status" }),
    h("div", { class: "chaos-grid" },
      h("div", {},
        h("div", { class: "table-wrap" }, h("table", {},
          h("thead", {}, h("tr", {}, ["Process", "State", "PID", ""].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", { id: "chaos-processes" }))),
        h("h3", {}, "Partition"), h("div", { id: "chaos-partition" }),
        h("button", { type: "button", id: "heal-all", onclick: () => fault("heal_all") }, "Heal all")),
      h("div", {},
        h("h3", {}, "Load"),
        h("div", { class: "chaos-load" }, number("load-rate", 10, "orders/s", 50), number("load-duration", 10, "for s", 120),
          h("button", { type: "button", id: "load-button", onclick: () => post("/api/chaos/load", {
            rate: Number($("load-rate").value), durationS: Number($("load-duration").value) }) }, "Start load")),
        h("h3", {}, "Scenarios"), h("div", { id: "chaos-scenarios", class: "chaos-actions" }),
        h("div", { id: "chaos-run" }),
        h("h3", {}, "Message faults"), h("div", { id: "chaos-rule-editor" }), h("ul", { id: "chaos-rules" }),
        h("h3", {}, "Changes"), h("ol", { id: "chaos-changes", class: "elections" }))));
}

export async function install() {
  const { ok, body } = await getJSON("/api/chaos").catch(() => ({ ok: false }));
  if (!ok || !body) return; // chaos off: no panel
  document.querySelector(".cluster").prepend(panel());
  render(body);
  timer = setTimeout(refresh, POLL_MS);
}
