// The cluster view: services, executors, queue, elections, live charts, the books
// database's replicas, payment and the transactions in doubt, recent orders and the
// chosen order's space-time diagram. Polls /api/cluster more than once a second.
import { pollCharts } from "/static/charts.js";
import { render as renderDiagram, LANES } from "/static/diagram.js";
import { install as installChaos } from "/static/chaos.js";
import { render as renderReplication } from "/static/replication.js";
import { render as renderCommitment } from "/static/commitment.js";
import { errorMessage, executionText, fmtClock, fmtTime, getJSON, h, shortId } from "/static/dom.js";

const CLUSTER_MS = 750; // a refresh starts this long after the previous one did (or when it answers)
const ORDERS_MS = 2000;
const $ = (id) => document.getElementById(id);
let chosen = new URLSearchParams(location.search).get("order");
let chosenOrder = null;

function yesNo(flag) {
  return h("span", {}, h("span", { class: `dot ${flag ? "up" : "down"}`, "aria-hidden": "true" }), flag ? "up" : "down");
}

// ---- cluster ----

function renderServices(services) {
  const rows = (services || []).map((sv) => h(
    "tr", { dataset: { service: sv.name, healthy: Boolean(sv.healthy) }, class: "service-row" },
    h("td", {}, h("span", { class: `dot ${sv.healthy ? "up" : "down"}`, title: sv.healthy ? "serving" : "not serving" }),
      h("strong", {}, sv.name), sv.replicaId != null ? ` #${sv.replicaId}` : "",
      h("span", { class: "skip" }, sv.healthy ? " (healthy)" : " (down)")),
    h("td", { class: "mono" }, sv.address || ""),
    h("td", { class: "mono" }, sv.pid ?? "—"),
    h("td", {}, sv.cachedOrders ?? "—"),
  ));
  $("services").replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 4, class: "empty" }, "No services reported."))]));
}

function renderExecutors(executors, leader) {
  const leaderId = leader ? leader.replicaId : null;
  const cards = (executors || []).map((ex) => {
    const isLeader = ex.alive && leaderId != null && ex.replicaId === leaderId;
    return h(
      "article",
      {
        class: `executor${isLeader ? " leader" : ""}${ex.alive ? "" : " dead"}`,
        dataset: { replicaId: ex.replicaId, alive: Boolean(ex.alive), leader: isLeader, pid: ex.pid ?? "" },
        "aria-label": `Replica ${ex.replicaId}${isLeader ? ", leader" : ""}${ex.alive ? "" : ", down"}`,
      },
      h("h3", {}, `Replica ${ex.replicaId} `, isLeader ? h("span", { class: "badge" }, "LEADER") : null),
      h("dl", {},
        h("dt", {}, "state"), h("dd", {}, yesNo(ex.alive)),
        h("dt", {}, "role"), h("dd", {}, ex.alive ? ex.role || "—" : "—"),
        h("dt", {}, "epoch"), h("dd", {}, ex.epoch ?? "—"),
        h("dt", {}, "sees"), h("dd", {}, ex.leaderId != null ? `leader ${ex.leaderId}` : "no leader"),
        h("dt", {}, "executed"), h("dd", {}, ex.executed ?? "—"),
        h("dt", {}, "pid"), h("dd", { class: "mono" }, ex.pid ?? "—")),
    );
  });
  $("executors").replaceChildren(...(cards.length ? cards : [h("p", { class: "empty" }, "No executors reported.")]));
  const line = $("leader-line");
  line.dataset.leader = leaderId ?? "";
  line.dataset.epoch = leader && leader.epoch != null ? leader.epoch : "";
  line.textContent = leader ? `leader: replica ${leader.replicaId}, epoch ${leader.epoch}` : "no leader";
}

function renderQueue(queue) {
  const q = queue || {};
  const stat = (value, label, id) => h("div", { class: "stat", id }, h("b", {}, value ?? "—"), h("span", {}, label));
  $("queue-health").replaceChildren(q.healthy === undefined ? "" : yesNo(q.healthy));
  $("queue-stats").replaceChildren(
    stat(q.depth, "waiting", "queue-depth"),
    stat(q.leased, "leased"),
    stat(q.executed, "executed"),
    stat(q.epoch, "epoch"),
  );
  const next = Array.isArray(q.next) ? q.next : [];
  $("queue-next").replaceChildren(...(next.length ? next.map((o, i) => h(
    "tr", { dataset: { orderId: o.orderId } },
    h("td", {}, `${i + 1}.`),
    h("td", { class: "mono" }, shortId(o.orderId), h("span", { class: "muted" }, o.sequence != null ? ` #${o.sequence}` : "")),
    h("td", {}, h("span", { class: "prio", title: "priority" }, o.books ?? "?")),
  )) : [h("tr", {}, h("td", { colspan: 3, class: "empty" }, "The queue is empty."))]));
}

function renderElections(elections) {
  const all = elections || [];
  // Each new leader registers its epoch with the queue: one chip per epoch.
  const leaders = new Map();
  for (const e of all) {
    if (e.step === "registered" && e.epoch != null && !leaders.has(`${e.epoch}`)) {
      leaders.set(`${e.epoch}`, e);
    }
  }
  $("leaders").replaceChildren(...[...leaders.values()].slice(-4).map((e) => h(
    "li", { dataset: { epoch: e.epoch, replicaId: e.replicaId } },
    h("b", {}, `epoch ${e.epoch}`), ` replica ${e.replicaId} `, h("span", { class: "muted" }, fmtTime(e.at)),
  )));
  const list = [...all].reverse().slice(0, 60);
  $("elections").replaceChildren(...(list.length ? list.map((e) => h(
    "li", { dataset: { step: e.step, replicaId: e.replicaId, epoch: e.epoch ?? "" } },
    h("span", { class: "muted mono" }, fmtTime(e.at)),
    h("span", { class: `step ${String(e.step || "").toLowerCase().replace(/[^a-z]/g, "")}` }, e.step || "?"),
    h("span", {}, h("strong", {}, `replica ${e.replicaId}`), e.detail ? ` ${e.detail}` : "",
      e.epoch != null && !/epoch/.test(e.detail || "") ? h("span", { class: "muted" }, ` · epoch ${e.epoch}`) : ""),
  )) : [h("li", { class: "empty" }, "No election yet.")]));
}

// A digest's first characters, enough to see at a glance that replicas agree.
const shortDigest = (d) => (d ? String(d).slice(0, 10) : "—");

function renderDatabase(database) {
  const db = database || {};
  const primaryId = db.primary ? db.primary.replicaId : null;
  const cards = (db.replicas || []).map((r) => {
    const isPrimary = r.alive && r.replicaId === primaryId;
    return h(
      "article",
      {
        class: `replica${isPrimary ? " leader" : ""}${r.alive ? "" : " dead"}`,
        dataset: { replicaId: r.replicaId, alive: Boolean(r.alive), role: r.alive ? r.role || "" : "", digest: r.digest || "" },
        "aria-label": `Database replica ${r.replicaId}${isPrimary ? ", primary" : ""}${r.alive ? "" : ", down"}`,
      },
      h("h3", {}, `Replica ${r.replicaId} `, isPrimary ? h("span", { class: "badge" }, "PRIMARY") : null),
      h("dl", {},
        h("dt", {}, "state"), h("dd", {}, yesNo(r.alive)),
        h("dt", {}, "role"), h("dd", {}, r.alive ? r.role || "—" : "—"),
        h("dt", {}, "view"), h("dd", {}, r.view ?? "—"),
        h("dt", {}, "applied"), h("dd", { title: `commit ${r.commitIndex ?? "?"}, log ${r.lastIndex ?? "?"}` }, r.appliedIndex ?? "—"),
        h("dt", {}, "digest"), h("dd", { class: "mono", title: r.digest || "" }, shortDigest(r.digest)),
        h("dt", {}, "pid"), h("dd", { class: "mono" }, r.pid ?? "—")),
    );
  });
  $("replicas").replaceChildren(...(cards.length ? cards : [h("p", { class: "empty" }, "No replicas reported.")]));
  const line = $("database-line");
  line.dataset.primary = primaryId ?? "";
  line.dataset.converged = String(Boolean(db.converged));
  line.textContent = `${db.primary ? `primary: replica ${primaryId}, view ${db.primary.view}` : "no primary"}` +
    ` · ${db.converged ? "replicas converged (same position and digest)" : "replicas differ or catching up"}`;
}

function renderPayment(payment, inDoubt) {
  const p = payment || {};
  const stat = (value, label, id) => h("div", { class: "stat", id }, h("b", {}, value ?? "—"), h("span", {}, label));
  const captured = p.capturedCents != null ? `${(p.capturedCents / 100).toFixed(2)} ${p.currency || ""}` : null;
  $("payment-health").replaceChildren(payment ? yesNo(p.healthy) : "");
  $("payment-stats").replaceChildren(
    stat(captured, "captured", "payment-captured"),
    stat(p.prepared, "prepared"),
    stat(p.committed, "captures"),
    stat(p.aborted, "voids"),
  );
  const list = inDoubt || [];
  $("in-doubt").replaceChildren(...(list.length ? list.map((t) => h(
    "tr", { dataset: { txnId: t.txnId, where: t.where } },
    h("td", { class: "mono", title: t.txnId }, shortId(t.txnId)),
    h("td", {}, t.where),
    h("td", {}, t.state, t.reason ? h("span", { class: "muted" }, ` · ${t.reason}`) : ""),
    h("td", {}, t.epoch ?? "—"),
  )) : [h("tr", {}, h("td", { colspan: 4, class: "empty" }, "Nothing in doubt."))]));
}

async function pollCluster() {
  const started = Date.now();
  try {
    const { ok, status, body } = await getJSON("/api/cluster");
    if (!ok || !body) throw new Error(errorMessage(body, status));
    renderServices(body.services);
    renderExecutors(body.executors, body.leader);
    renderQueue(body.queue);
    renderElections(body.elections);
    renderDatabase(body.database);
    renderPayment(body.payment, body.inDoubt);
    $("live-dot").className = "dot up";
    $("live-text").textContent = `live · updated ${fmtTime(Date.now())}`;
    document.body.dataset.clusterUpdated = String(Date.now());
  } catch (err) {
    $("live-dot").className = "dot down";
    $("live-text").textContent = `cluster state unavailable: ${err.message || err}`;
  } finally {
    setTimeout(pollCluster, Math.max(0, CLUSTER_MS - (Date.now() - started)));
  }
}

// ---- orders ----

function outcomeCell(status, reason) {
  const approved = status === "Order Approved";
  const word = approved ? "approved" : status === "Order Rejected" ? "rejected" : "error";
  return h("td", {},
    h("span", { class: approved ? "status-approved" : "status-rejected" }, word),
    !approved && reason ? h("div", { class: "muted", style: "font-size:.82rem" }, reason) : null);
}

async function pollOrders() {
  try {
    const { ok, body } = await getJSON("/api/orders?limit=20");
    if (ok && body && Array.isArray(body.orders)) {
      const rows = body.orders.map((o) => h(
        "tr",
        {
          class: "order-row", tabindex: 0, "aria-selected": String(o.orderId === chosen),
          dataset: { orderId: o.orderId, status: o.status },
          onclick: () => choose(o.orderId),
          onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); choose(o.orderId); } },
        },
        h("td", { class: "mono" }, fmtTime(o.createdAt)),
        h("td", { class: "mono" }, shortId(o.orderId)),
        outcomeCell(o.status, o.reason),
        h("td", {}, o.books ?? ""),
        h("td", {}, executionText(o.execution) || "—"),
      ));
      $("order-rows").replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No orders yet: place one in the shop."))]));
      if (!chosen && body.orders.length) choose(body.orders[0].orderId);
    }
  } catch {
    // the cluster line already says when the orchestrator is unreachable
  } finally {
    setTimeout(pollOrders, ORDERS_MS);
  }
  if (chosen && chosenOrder && chosenOrder.orderId === chosen &&
      (!chosenOrder.execution || chosenOrder.execution.state !== "executed") && chosenOrder.status === "Order Approved") {
    loadOrder(chosen, false);
  }
}

function choose(orderId) {
  chosen = orderId;
  for (const row of document.querySelectorAll("tr.order-row")) {
    row.setAttribute("aria-selected", String(row.dataset.orderId === orderId));
  }
  const url = new URL(location.href);
  url.searchParams.set("order", orderId);
  history.replaceState(null, "", url);
  loadOrder(orderId, true);
}

// What the diagram is drawn from; a refresh that changes none of it keeps the drawing.
const drawnFrom = (o) => JSON.stringify([o.orderId, o.status, o.events, o.cancel, o.vectorClock, o.clockErrors]);

async function loadOrder(orderId, scroll) {
  const { ok, status, body } = await getJSON(`/orders/${encodeURIComponent(orderId)}`).catch(() => ({ ok: false, status: 0 }));
  if (orderId !== chosen) return;
  const detail = $("order-detail");
  if (!ok || !body) {
    chosenOrder = null;
    detail.replaceChildren(h("p", { class: "empty" }, status ? errorMessage(body, status) : "The order could not be loaded."));
    return;
  }
  const same = chosenOrder && drawnFrom(chosenOrder) === drawnFrom(body);
  chosenOrder = body;
  if (same && $("chosen-execution")) {
    $("chosen-execution").textContent = executionText(body.execution) || "";
    loadOrderSteps(orderId);
    return;
  }
  const approved = body.status === "Order Approved";
  $("order-hint").textContent = shortId(orderId);
  detail.replaceChildren(
    h("div", { class: "order-head" },
      h("span", { class: "mono", id: "chosen-order" }, body.orderId),
      h("span", { class: approved ? "status-approved" : "status-rejected" }, body.status),
      body.reason ? h("span", {}, body.reason) : null,
      h("span", {}, "final clock ", h("span", { class: "mono" }, fmtClock(body.vectorClock))),
      h("span", { id: "chosen-execution" }, executionText(body.execution) || ""),
      h("a", { class: "button secondary", id: "trace-link", href: `/orders/${encodeURIComponent(body.orderId)}/trace`,
        download: `order-${body.orderId}.shiviz.log` }, "Download ShiViz trace"),
      h("span", { class: "muted", style: "font-size:.82rem" }, "its first line is the parser regex ShiViz asks for")),
    h("div", { class: "legend" },
      LANES.map((l) => h("span", {}, h("span", { class: "dot", style: `background:${l.color}` }), `${l.short} = ${l.service}`)),
      h("span", {}, "→ clock sent to a peer after each event"),
      h("span", {}, "events ordered by their vector clocks")),
    h("div", { class: "diagram-wrap", id: "diagram" }, renderDiagram(body)),
    eventsTable(body),
  );
  detail.append(
    h("h3", { class: "sub" }, "In the books database"),
    h("div", { class: "legend" },
      h("span", {}, "→ the primary's Append to a backup, the backup's acknowledgement back"),
      h("span", {}, "applied: committed on a majority's disks")),
    h("div", { class: "diagram-wrap", id: "replication" }, h("p", { class: "empty" }, "Loading…")),
    h("h3", { class: "sub" }, "Two-phase commit"),
    h("div", { class: "legend" },
      h("span", {}, "the leader executor coordinates: prepare, votes, the decision logged first, then sent, acks")),
    h("div", { class: "diagram-wrap", id: "commitment" }, h("p", { class: "empty" }, "Loading…")),
  );
  drawn.replication = drawn.commitment = null;
  loadOrderSteps(orderId);
  if ((body.clockErrors || []).length) {
    detail.append(h("ul", { class: "error-text", id: "clock-errors" }, body.clockErrors.map((e) => h("li", {}, e))));
  }
  if (scroll) $("order-panel").scrollIntoView({ block: "nearest" });
}

// The chosen order's steps in the books database's replicas and in its two-phase
// commit, each redrawn when they change.
const drawn = { replication: null, commitment: null };

function loadOrderSteps(orderId) {
  loadSteps(orderId, "commitment", "The executors could not be asked.",
    () => "No executor has recorded a two-phase commit of this order.", renderCommitment);
  loadSteps(orderId, "replication", "The books database could not be asked.",
    (body) => `No replica has recorded this order (${(body.answered || []).length} answered): its copies have not been reserved.`,
    renderReplication);
}

async function loadSteps(orderId, kind, unavailable, empty, render) {
  const { ok, body } = await getJSON(`/orders/${encodeURIComponent(orderId)}/${kind}`).catch(() => ({ ok: false }));
  const box = $(kind);
  if (orderId !== chosen || !box) return;
  const key = ok && body ? JSON.stringify(body.steps) : "unavailable";
  if (key === drawn[kind]) return;
  drawn[kind] = key;
  if (!ok || !body) {
    box.replaceChildren(h("p", { class: "empty" }, unavailable));
  } else if (!(body.steps || []).length) {
    box.replaceChildren(h("p", { class: "empty", id: `${kind}-empty` }, empty(body)));
  } else {
    box.replaceChildren(render(body));
  }
}

function eventsTable(order) {
  const events = [...(order.events || [])];
  return h("details", { style: "margin-top:10px" },
    h("summary", {}, `Events (${events.length})`),
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Event", "Service", "Clock", "Outcome", "Answered by", "ms"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, events.map((ev) => h("tr", {},
        h("td", {}, `${ev.event} ${ev.name || ""}`),
        h("td", {}, ev.service),
        h("td", { class: "mono" }, fmtClock(ev.clock)),
        h("td", {}, ev.ok ? "ok" : `failed: ${ev.reason || ""}`),
        h("td", {}, ev.answeredBy || ""),
        h("td", {}, ev.durationMs != null ? Number(ev.durationMs).toFixed(1) : ""),
      ))))));
}

pollCluster();
pollOrders();
pollCharts();
installChaos();
if (chosen) loadOrder(chosen, false);
