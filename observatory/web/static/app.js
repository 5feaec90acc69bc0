// observatory's pages: charts drawn as SVG from the JSON API, live updates by polling, copy/share, review.
// No libraries, nothing loaded from elsewhere. Works without it: the pages are server-rendered.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
// Okabe-Ito: distinguishable with the common colour-vision deficiencies, dark enough on white.
const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#8a6d00", "#56B4E9", "#000000", "#7a3e9d"];
const PLATFORM_NAMES = { twitter: "X/Twitter", facebook: "Facebook", instagram: "Instagram", youtube: "YouTube",
  whatsapp: "WhatsApp", telegram: "Telegram", tiktok: "TikTok", signal: "Signal", control: "Control sites" };

function el(name, attrs, text) {
  const node = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmtUTC(t, withDate) {
  const d = new Date(t * 1000);
  const hm = d.toISOString().slice(11, 16);
  if (!withDate) return hm;
  const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  return `${d.getUTCDate()} ${months[d.getUTCMonth()]}`;
}

function ticks(lo, hi) {
  const span = hi - lo;
  const steps = [3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400];
  const step = steps.find((s) => span / s <= 6) || steps[steps.length - 1];
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) out.push(t);
  // Midnight ticks carry the date, so a multi-day window never shows "00:00" without saying which day.
  return out.map((t) => ({ t, label: step >= 86400 || t % 86400 === 0 ? fmtUTC(t, true) : fmtUTC(t, false) }));
}

// Reachability per bucket of several lines summed: the country-wide level of a platform.
function aggregate(lines) {
  const sums = new Map();
  for (const line of lines) {
    for (const [t, , ok, down, anomalous] of line.points) {
      const s = sums.get(t) || [0, 0];
      s[0] += ok;
      s[1] += ok + down + anomalous;
      sums.set(t, s);
    }
  }
  return [...sums.entries()].sort((a, b) => a[0] - b[0]).map(([t, [ok, judged]]) => [t, judged, ok, judged - ok, 0]);
}

// An SVG path through the judged points; a gap longer than `gap` seconds breaks the line.
function pathOf(points, x, y, bucket, gap) {
  let d = "", prev = null;
  const dots = [];
  const values = [];
  for (const [t, , ok, down, anomalous] of points) {
    const judged = ok + down + anomalous;
    if (!judged) continue;
    const v = ok / judged;
    values.push([t, v]);
    const px = x(t + bucket / 2).toFixed(1), py = y(v).toFixed(1);
    d += (prev === null || t - prev > gap ? "M" : "L") + px + "," + py;
    prev = t;
  }
  // isolated points (a gap on both sides) would be invisible as a path: mark them as dots
  values.forEach(([t], i) => {
    const before = i === 0 || t - values[i - 1][0] > gap, after = i === values.length - 1 || values[i + 1][0] - t > gap;
    if (before && after) dots.push([x(t + bucket / 2), y(values[i][1])]);
  });
  return { d, dots, values };
}

// One platform's chart: a line per network (reachability = ok / judged), incidents as shaded spans.
function drawChart(plot, platform, lines, incidents, lo, hi, bucket, colours) {
  const W = 400, H = 150, L = 36, R = 8, T = 8, B = 22;
  const x = (t) => L + ((t - lo) / (hi - lo)) * (W - L - R);
  const y = (v) => T + (1 - v) * (H - T - B);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  for (const inc of incidents) {
    const s = Math.max(lo, Date.parse(inc.start) / 1000);
    const e = Math.min(hi, inc.end ? Date.parse(inc.end) / 1000 : hi);
    if (e <= s) continue;
    const r = el("rect", { x: x(s), y: T, width: Math.max(1.5, x(e) - x(s)), height: H - T - B,
      class: "shade" + (inc.end ? " ended" : "") });
    r.appendChild(el("title", {}, `${inc.status} ${inc.kind.replace(/_/g, " ")}: ${inc.start} – ${inc.end || "ongoing"}`));
    svg.appendChild(r);
  }
  for (const v of [0, 0.5, 1]) {
    svg.appendChild(el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.appendChild(el("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }, `${v * 100}%`));
  }
  for (const { t, label } of ticks(lo, hi)) {
    svg.appendChild(el("line", { x1: x(t), x2: x(t), y1: H - B, y2: H - B + 3, class: "grid" }));
    svg.appendChild(el("text", { x: x(t), y: H - 6, "text-anchor": "middle" }, label));
  }
  // Probes measure every few minutes to an hour: only a silence of an hour (or 3 buckets) breaks a line.
  const gap = Math.max(3 * bucket, 3600);
  let worst = null;
  const values = [];
  const draw = (points, cls, colour, title) => {
    const { d, dots, values: vs } = pathOf(points, x, y, bucket, gap);
    if (d) {
      const path = el("path", { d, class: cls, stroke: colour });
      path.appendChild(el("title", {}, title));
      svg.appendChild(path);
    }
    for (const [cx, cy] of dots) svg.appendChild(el("circle", { cx, cy, r: 1.8, fill: colour, class: cls + "-dot" }));
    return vs;
  };
  for (const line of lines) {
    for (const [t, v] of draw(line.points, "line", colours[line.asn], `${line.asn} ${line.network}`)) {
      values.push(v);
      if (!worst || v < worst.v) worst = { v, t, asn: line.asn };
    }
  }
  if (lines.length > 1) draw(aggregate(lines), "line all", "#111", "all networks");
  const name = PLATFORM_NAMES[platform] || platform;
  if (!lines.length) {
    svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "nodata" }, "no measurements"));
    svg.setAttribute("aria-label", `${name}: no measurements in this window`);
  } else {
    const low = worst ? `lowest ${(worst.v * 100).toFixed(0)}% at ${new Date(worst.t * 1000).toISOString().slice(0, 16).replace("T", " ")} UTC on ${worst.asn}` : "no judged measurements";
    svg.setAttribute("aria-label", `${name} reachability by network: ${low}; ${incidents.length} incident(s) shaded`);
  }
  plot.replaceChildren(svg);
  // Summaries for tests and for anyone inspecting the page: the lowest point and the typical level.
  plot.dataset.lowest = worst ? worst.v.toFixed(3) : "";
  values.sort((a, b) => a - b);
  plot.dataset.median = values.length ? values[Math.floor(values.length / 2)].toFixed(3) : "";
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

async function refreshCharts(box) {
  const cfg = JSON.parse(box.dataset.chart);
  const q = new URLSearchParams({ country: cfg.country });
  if (cfg.since && (cfg.until || !cfg.window)) q.set("since", cfg.since);
  if (cfg.until) q.set("until", cfg.until);
  if (cfg.window && !cfg.until) q.set("window", cfg.window);
  const series = await getJSON(`/api/v1/series?${q}`);
  const lo = Date.parse(series.since) / 1000, hi = Date.parse(series.until) / 1000;
  const iq = new URLSearchParams({ country: cfg.country, since: series.since, until: series.until, limit: "200" });
  const incidents = (await getJSON(`/api/v1/incidents?${iq}`))
    .filter((i) => !(i.review && i.review.state === "dismissed"));
  const asns = [...new Set(series.series.map((s) => s.asn))].sort();
  const colours = {};
  asns.forEach((a, i) => { colours[a] = PALETTE[i % PALETTE.length]; });
  const wanted = cfg.asns && cfg.asns.length ? new Set(cfg.asns) : null;
  for (const fig of box.querySelectorAll("figure.chart")) {
    const p = fig.dataset.platform;
    const lines = series.series.filter((s) => s.platform === p && (!wanted || wanted.has(s.asn) || p === "control"));
    const mine = incidents.filter((i) => !i.platforms.length || i.platforms.includes(p));
    drawChart(fig.querySelector(".plot"), p, lines, mine, lo, hi, series.bucket_seconds, colours);
  }
  const names = {};
  series.series.forEach((s) => { names[s.asn] = s.network; });
  const legend = document.getElementById("legend");
  if (legend) {
    legend.replaceChildren(...asns.map((a) => {
      const s = document.createElement("span");
      s.style.setProperty("--c", colours[a]);
      s.textContent = `${a}${names[a] ? " · " + names[a] : ""}`;
      return s;
    }));
    const key = document.createElement("span");
    key.className = "shade-key";
    key.textContent = "incident";
    const all = document.createElement("span");
    all.className = "all-key";
    all.style.setProperty("--c", "#111");
    all.textContent = "all networks";
    legend.prepend(all);
    legend.appendChild(key);
    const past = document.createElement("span");
    past.className = "shade-key ended";
    past.textContent = "past incident";
    key.textContent = "ongoing incident";
    legend.appendChild(past);
  }
  const badge = document.getElementById("country-status");
  if (badge && !cfg.until) {
    const open = incidents.filter((i) => !i.end);
    const status = open.some((i) => i.status === "confirmed") ? "confirmed" : open.length ? "suspected" : "normal";
    badge.textContent = status;
    badge.className = `badge ${status}`;
  }
  box.dataset.updated = series.as_of;
}

function startCharts() {
  const box = document.getElementById("charts");
  if (!box) return;
  const cfg = JSON.parse(box.dataset.chart);
  const run = () => refreshCharts(box).catch((e) => { box.dataset.error = String(e); });
  run();
  if (cfg.live && cfg.poll > 0) setInterval(run, cfg.poll * 1000);
}

// Overview: re-render the countries table from /api/v1/countries.
function sparkSVG(points, label) {
  const W = 120, H = 28, step = W / Math.max(1, points.length - 1);
  const svg = el("svg", { class: "spark", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
  svg.appendChild(el("line", { class: "base", x1: 0, y1: 2, x2: W, y2: 2 }));
  let seg = [];
  const flush = () => {
    if (seg.length > 1) svg.appendChild(el("polyline", { points: seg.join(" ") }));
    else if (seg.length === 1) { const [cx, cy] = seg[0].split(","); svg.appendChild(el("circle", { cx, cy, r: 1.5 })); }
    seg = [];
  };
  points.forEach((p, i) => { if (p === null) flush(); else seg.push(`${(i * step).toFixed(1)},${(2 + (1 - p) * (H - 4)).toFixed(1)}`); });
  flush();
  const known = points.filter((p) => p !== null);
  svg.setAttribute("aria-label", known.length ? `${label}: lowest ${Math.round(Math.min(...known) * 100)}% in the last 24 hours` : `${label}: no data in 24 hours`);
  return svg;
}

function renderCountries(table, data) {
  const body = table.tBodies[0];
  const rows = data.countries.map((c) => {
    const tr = document.createElement("tr");
    tr.className = `row-${c.status}`;
    tr.dataset.country = c.country;
    const th = document.createElement("th");
    th.scope = "row";
    const a = document.createElement("a");
    a.href = `/country/${c.country}`;
    a.textContent = c.name;
    const cc = document.createElement("span");
    cc.className = "cc";
    cc.textContent = c.country;
    th.append(a, " ", cc);
    const st = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = `badge ${c.status}`;
    badge.textContent = c.status;
    st.appendChild(badge);
    const sp = document.createElement("td");
    sp.appendChild(sparkSVG(c.sparkline, c.name));
    const op = document.createElement("td");
    if (!c.open.length) { const m = document.createElement("span"); m.className = "muted"; m.textContent = "none"; op.appendChild(m); }
    c.open.forEach((o, i) => {
      if (i) op.appendChild(document.createElement("br"));
      const l = document.createElement("a");
      l.href = `/incident/${o.id}`;
      l.textContent = o.headline;
      op.appendChild(l);
    });
    tr.append(th, st, sp, op);
    return tr;
  });
  body.replaceChildren(...rows);
  const asOf = document.getElementById("as-of");
  if (asOf) { asOf.textContent = data.as_of.replace("T", " ").replace("Z", " UTC"); asOf.setAttribute("datetime", data.as_of); }
}

function startOverview() {
  const table = document.getElementById("countries");
  if (!table) return;
  const every = Number(table.dataset.poll || 15);
  if (every > 0) setInterval(() => getJSON("/api/v1/countries").then((d) => renderCountries(table, d)).catch(() => {}), every * 1000);
}

function startShare() {
  const say = (btn, text) => {
    const out = btn.parentElement.querySelector(".copied");
    if (out) { out.textContent = text; setTimeout(() => { out.textContent = ""; }, 2500); }
  };
  for (const btn of document.querySelectorAll("button.copy")) {
    btn.addEventListener("click", async () => {
      const text = btn.dataset.copyText || document.querySelector(btn.dataset.copy).textContent.trim();
      try { await navigator.clipboard.writeText(text); say(btn, "Copied."); }
      catch { say(btn, "Copy failed: select the text and copy it."); }
    });
  }
  for (const btn of document.querySelectorAll("button.share-native")) {
    if (!navigator.share) continue;
    btn.hidden = false;
    btn.addEventListener("click", () => navigator.share({ title: btn.dataset.title, url: btn.dataset.url }).catch(() => {}));
  }
}

function startReview() {
  const form = document.getElementById("review-form");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = form.querySelector(".form-result");
    const body = { action: form.action.value, note: form.note.value, author: form.author.value || "analyst" };
    const r = await fetch(`/api/v1/incidents/${encodeURIComponent(form.dataset.incident)}/review`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${form.token.value}` },
      body: JSON.stringify(body),
    });
    if (r.ok) { out.textContent = "Saved."; window.location.reload(); }
    else { const e = await r.json().catch(() => ({ error: r.statusText })); out.textContent = `Not saved: ${e.error}`; }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  startCharts();
  startOverview();
  startShare();
  startReview();
});
