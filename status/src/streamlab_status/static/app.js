// The status page's only script: fetch /api/status every 2 s and redraw the stages in place.
// No library: the sparklines are a few lines of inline SVG, so the page works offline.
"use strict";

const STAGES = {
  api: { title: "quotes API", column: "source", unit: "" },
  nifi: { title: "NiFi", column: "nifi", unit: "FlowFiles queued" },
  topic: { title: "topic", column: "topic", unit: "records" },
  consumer: { title: "consumer group", column: "consumer", unit: "records consumed" },
  postgres: { title: "PostgreSQL", column: "sinks", unit: "rows" },
  mongo: { title: "MongoDB", column: "sinks", unit: "documents" },
  dlq: { title: "dead letters", column: "sinks", unit: "records" },
};
const WINDOW_S = 300;

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function build() {
  for (const [id, stage] of Object.entries(STAGES)) {
    const card = el("section", { class: "stage", id: `stage-${id}`, "data-stage": id, "data-state": "" });
    const head = el("h2");
    head.append(el("span", { class: "title" }, stage.title), el("span", { class: "badge" }, "…"));
    const count = el("div", { class: "count" });
    count.append(el("span", { class: "value", "data-count": "" }, "–"), " ", el("span", { class: "unit" }, stage.unit));
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 100 30");
    svg.setAttribute("preserveAspectRatio", "none");
    card.append(head, count, el("div", { class: "rate" }), el("div", { class: "details" }), svg, el("div", { class: "reason" }));
    document.querySelector(`[data-column="${stage.column}"]`).append(card);
  }
}

function formatRate(rate) {
  if (rate === null || rate === undefined) return "rate –";
  return `${rate < 10 ? rate.toFixed(1) : Math.round(rate).toLocaleString()} /s`;
}

function ago(epoch, now) {
  if (!epoch) return "not seen yet";
  const seconds = Math.max(0, Math.round(now - epoch));
  return `${seconds} s ago`;
}

function detailLines(stage, now) {
  const d = stage.detail || {};
  if (stage.state === "down" || stage.state === "off") return [];
  switch (stage.id) {
    case "api":
      return [`/healthz answered in ${d.answer_ms} ms`];
    case "nifi":
      return [`last poll: ${ago(d.last_poll, now)}`, `GetHTTP runs (5 min): ${d.polls_5min ?? "–"}`];
    case "topic":
      return Object.entries(d.partitions || {}).map(([p, n]) => `partition ${p}: ${n.toLocaleString()}`);
    case "consumer":
      if (d.members === undefined) return [];
      return [`${d.members} member(s) in ${d.group}`]
        .concat(Object.entries(d.lag || {}).map(([p, n]) => `partition ${p}: lag ${n.toLocaleString()}`));
    case "mongo":
      return d.counted_with ? [`counted with ${d.counted_with}`] : [];
    default:
      return [];
  }
}

function sparkPath(points) {
  if (points.length < 2) return ["", ""];
  // Up to 5 minutes; a page watching for less spreads what it has over the whole width.
  const span = Math.min(WINDOW_S, Math.max(-points[0][0], 10));
  const top = Math.max(...points.map((p) => p[1]), 1e-9);
  const xy = points.map(([t, r]) => [Math.max(0, (t + span) / span) * 100, 29 - (r / top) * 27]);
  const line = xy.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(2)},${y.toFixed(2)}`).join("");
  const area = `${line}L${xy[xy.length - 1][0].toFixed(2)},30L${xy[0][0].toFixed(2)},30Z`;
  return [line, area];
}

function draw(snapshot) {
  for (const stage of snapshot.stages) {
    const card = document.getElementById(`stage-${stage.id}`);
    if (!card) continue;
    card.className = `stage ${stage.state}`;
    card.dataset.state = stage.state;
    card.querySelector(".badge").textContent = stage.state === "ok" ? "flowing" : stage.state === "off" ? "not in this lab" : stage.state;
    const value = card.querySelector(".value");
    const shown = stage.count === null ? (stage.id === "api" && stage.state === "ok" ? "up" : "–") : stage.count.toLocaleString();
    value.textContent = shown;
    value.dataset.count = stage.count === null ? "" : String(stage.count);
    card.querySelector(".rate").textContent = stage.id === "api" ? "" : formatRate(stage.rate);
    const details = card.querySelector(".details");
    details.replaceChildren(...detailLines(stage, snapshot.time).map((line) => el("div", {}, line)));
    card.querySelector(".reason").textContent = stage.reason || "";
    const svg = card.querySelector("svg");
    const [line, area] = sparkPath(stage.spark || []);
    const areaPath = document.createElementNS("http://www.w3.org/2000/svg", "path");
    areaPath.setAttribute("class", "area");
    areaPath.setAttribute("d", area);
    const linePath = document.createElementNS("http://www.w3.org/2000/svg", "path");
    linePath.setAttribute("d", line);
    svg.replaceChildren(areaPath, linePath);
  }
  const when = new Date(snapshot.time * 1000).toLocaleTimeString();
  document.getElementById("updated").textContent = `last look ${when}`;
}

async function refresh() {
  try {
    const response = await fetch("/api/status", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const snapshot = await response.json();
    if (snapshot.time !== null) draw(snapshot);
  } catch (error) {
    document.getElementById("updated").textContent = `status page unreachable (${error.message})`;
  }
}

build();
refresh();
setInterval(refresh, 2000);
