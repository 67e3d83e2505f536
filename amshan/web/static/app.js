// amshan's live meter page: loads /api/latest and /api/history, then follows /api/events (Server-Sent Events).
// No build step, no framework; the charts are uPlot (vendored beside this file).
"use strict";

const POWER_WINDOW = 3600;  // seconds of power the live chart keeps
const ENERGY_HOURS = 48;

const state = {
  meters: new Map(),  // key -> {values, info}
  selected: null,
  live: true,
  power: {t: [], imp: [], exp: []},
  energy: new Map(),  // hour start -> [import Wh, export Wh]
  health: null,
  healthAt: 0,
  loadedSeq: 0,  // the newest message the last full load included: older events are skipped
  pending: null,  // events that arrive while a load runs, applied after it

  source: null,
  charts: {power: null, energy: null},
};

const $ = (id) => document.getElementById(id);

function fmt(value) {
  if (value === undefined || value === null) return "\u2013";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toFixed(3)));
  return String(value);
}

function setField(element, value) {
  element.textContent = fmt(value);
  element.dataset.value = value === undefined || value === null ? "" : String(value);
}

function fmtTime(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "none yet";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

async function getJson(url) {
  const response = await fetch(url, {cache: "no-store"});
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function chosenMeter() {
  const match = /meter=([^&]+)/.exec(location.hash);
  const wanted = match ? decodeURIComponent(match[1]) : null;
  if (wanted && state.meters.has(wanted)) return wanted;
  if (state.selected && state.meters.has(state.selected)) return state.selected;
  return state.meters.size ? state.meters.keys().next().value : null;
}

function drawNav() {
  const nav = $("meters");
  nav.replaceChildren();
  if (state.meters.size < 2) return;
  for (const [key, meter] of state.meters) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `${meter.info.meter_manufacturer || "meter"} ${key === meter.info.meter_manufacturer ? "" : key}`.trim();
    button.dataset.meter = key;
    if (key === state.selected) button.classList.add("selected");
    button.addEventListener("click", () => { location.hash = `meter=${encodeURIComponent(key)}`; });
    nav.append(button);
  }
}

function drawValues() {
  const meter = state.meters.get(state.selected);
  $("empty").hidden = Boolean(meter);
  for (const id of ["now", "meter-card", "power-card", "energy-card"]) $(id).hidden = !meter;
  if (!meter) return;
  const values = meter.values;
  for (const element of document.querySelectorAll("[data-field]")) setField(element, values[element.dataset.field]);
  $("updated").textContent = meter.info.updated ? fmtTime(meter.info.updated) : "\u2013";
  const phases = meter.info.phases;
  const phasePower = Object.keys(values).some((name) => /^active_power_(import|export)_l\d$/.test(name));
  document.body.classList.toggle("phase-power", phasePower);
  $("phases-card").hidden = !phases;
  const body = $("phases").tBodies[0];
  if (body.rows.length !== phases) {
    body.replaceChildren();
    for (let phase = 1; phase <= phases; phase++) {
      const row = body.insertRow();
      row.id = `phase-l${phase}`;
      row.insertCell().textContent = `L${phase}`;
      for (const [name, unit] of [["voltage", "V"], ["current", "A"], ["active_power_import", "W"]]) {
        const cell = row.insertCell();
        const value = document.createElement("span");
        value.className = "value";
        value.dataset.field = `${name}_l${phase}`;
        const suffix = document.createElement("span");
        suffix.className = "unit";
        suffix.textContent = ` ${unit}`;
        cell.append(value, suffix);
      }
    }
  }
  for (const element of body.querySelectorAll("[data-field]")) setField(element, values[element.dataset.field]);
}

function chartWidth(id) {
  return Math.max($(id).clientWidth, 200);
}

function drawPower() {
  const data = [state.power.t, state.power.imp, state.power.exp];
  if (state.charts.power) {
    state.charts.power.setData(data);
    return;
  }
  state.charts.power = new uPlot({
    width: chartWidth("power-chart"),
    height: 240,
    cursor: {drag: {x: true, y: false}},
    scales: {y: {range: (u, min, max) => [Math.min(0, min), Math.max(max * 1.1, 10)]}},
    series: [
      {},
      {label: "Import", stroke: "#d9480f", fill: "rgba(217,72,15,0.12)", width: 2, value: (u, v) => (v === null ? "\u2013" : `${fmt(v)} W`)},
      {label: "Export", stroke: "#2b8a3e", width: 2, value: (u, v) => (v === null ? "\u2013" : `${fmt(v)} W`)},
    ],
    axes: [{}, {label: "W", size: 60}],
  }, data, $("power-chart"));
}

function energyRange(u) {
  const hours = u.data[0];
  const last = hours.length ? hours[hours.length - 1] : Math.floor(Date.now() / 3600000) * 3600;
  return [hours.length ? hours[0] : last - (ENERGY_HOURS - 1) * 3600, last + 3600];
}

function drawEnergy() {
  // every hour of the span gets a slot (empty where nothing is known), so each bar is one hour wide
  const hours = [...state.energy.keys()].sort((a, b) => a - b);
  const shown = [];
  if (hours.length) {
    const last = hours[hours.length - 1];
    for (let hour = state.live ? last - (ENERGY_HOURS - 1) * 3600 : hours[0]; hour <= last; hour += 3600) shown.push(hour);
  }
  const pick = (index) => shown.map((h) => (state.energy.has(h) ? state.energy.get(h)[index] : null));
  const data = [shown, pick(0), pick(1)];
  if (state.charts.energy) {
    state.charts.energy.setData(data);
    return;
  }
  const bars = uPlot.paths.bars({size: [0.8, 40], align: 1});
  state.charts.energy = new uPlot({
    width: chartWidth("energy-chart"),
    height: 220,
    cursor: {drag: {x: true, y: false}},
    scales: {
      x: {time: true, range: energyRange},
      y: {range: (u, min, max) => [0, Math.max(max * 1.1, 10)]},
    },
    series: [
      {},
      {label: "Import", fill: "rgba(217,72,15,0.75)", stroke: "#d9480f", paths: bars, points: {show: false}, value: (u, v) => (v === null ? "\u2013" : `${fmt(Math.round(v))} Wh`)},
      {label: "Export", fill: "rgba(43,138,62,0.75)", stroke: "#2b8a3e", paths: bars, points: {show: false}, value: (u, v) => (v === null ? "\u2013" : `${fmt(Math.round(v))} Wh`)},
    ],
    axes: [{}, {label: "Wh", size: 60}],
  }, data, $("energy-chart"));
}

function addPower(t, values) {
  const power = state.power;
  if (!("active_power_import" in values) && !("active_power_export" in values)) return;
  if (power.t.length && t <= power.t[power.t.length - 1]) return;  // already loaded with the history
  power.t.push(t);
  power.imp.push(values.active_power_import ?? null);
  power.exp.push(values.active_power_export ?? null);
  if (state.live) {
    while (power.t.length && power.t[0] < t - POWER_WINDOW) {
      power.t.shift(); power.imp.shift(); power.exp.shift();
    }
  }
}

function addEnergy(energy) {
  for (const [index, series] of [[0, "energy_import"], [1, "energy_export"]]) {
    for (const [hour, wh] of energy[series] || []) {
      const entry = state.energy.get(hour) || [null, null];
      entry[index] = wh;
      state.energy.set(hour, entry);
    }
  }
}

function drawHealth() {
  const health = state.health;
  if (!health) return;
  const elapsed = (Date.now() - state.healthAt) / 1000;
  const age = health.last_message_age === null ? null : health.last_message_age + elapsed;
  $("health-source").textContent = health.source || "\u2013";
  const connection = health.live ? (health.connected ? "connected" : "disconnected") : "recording";
  $("health-status").textContent = `${connection}, ${health.status}`;
  $("health-age").textContent = fmtAge(age);
  $("health-valid").textContent = fmt(health.valid_frames);
  $("health-invalid").textContent = fmt(health.invalid_frames);
  $("health-decoded").textContent = `${fmt(health.decoded)} of ${fmt(health.messages)}`;
  $("health-reconnects").textContent = fmt(health.reconnects);
}

function setHealth(health) {
  document.body.dataset.started = String(health.started);
  state.health = health;
  state.healthAt = Date.now();
  drawHealth();
}

async function loadSelected() {
  const key = state.selected;
  const meter = encodeURIComponent(key);
  const powerSince = state.live ? `&since=${Date.now() / 1000 - POWER_WINDOW}` : "";
  const [imp, exp, eImp, eExp] = await Promise.all([
    getJson(`api/history?meter=${meter}&field=active_power_import${powerSince}`),
    getJson(`api/history?meter=${meter}&field=active_power_export${powerSince}`),
    getJson(`api/history?meter=${meter}&field=energy_import`),
    getJson(`api/history?meter=${meter}&field=energy_export`),
  ]);
  if (key !== state.selected) return;
  const exports = new Map(exp.points);
  const imports = new Map(imp.points);
  const times = [...new Set([...imports.keys(), ...exports.keys()])].sort((a, b) => a - b);
  state.power = {t: times, imp: times.map((t) => imports.get(t) ?? null), exp: times.map((t) => exports.get(t) ?? null)};
  state.energy = new Map();
  addEnergy({energy_import: eImp.points, energy_export: eExp.points});
  $("power-title").textContent = state.live ? "Power, last hour" : "Power, whole recording";
  $("energy-title").textContent = state.live ? "Energy per hour, last 48 hours" : "Energy per hour, whole recording";
  drawValues();
  drawPower();
  drawEnergy();
}

async function reload() {
  state.pending = [];
  try {
    const [latest, health] = await Promise.all([getJson("api/latest"), getJson("api/health")]);
    state.live = latest.live;
    setLink(state.live ? "live" : "recording", "up");
    state.loadedSeq = latest.seq;
    document.body.dataset.seq = String(latest.seq);
    state.meters = new Map(latest.meters.map((m) => [m.meter, {values: m.values, info: m.info}]));
    setHealth(health);
    await select(chosenMeter());
  } finally {
    const pending = state.pending;
    state.pending = null;
    for (const message of pending) apply(message);
  }
}

async function select(key) {
  state.selected = key;
  document.body.dataset.meter = key || "";
  drawNav();
  drawValues();
  if (key !== null) await loadSelected();
  document.body.dataset.ready = "true";
}

function onMessage(event) {
  const message = JSON.parse(event.data);
  if (state.pending !== null) state.pending.push(message);
  else apply(message);
}

function apply(message) {
  if (message.seq <= state.loadedSeq) return;
  state.loadedSeq = message.seq;
  const known = state.meters.get(message.meter);
  const meter = known || {values: {}, info: message.info};
  Object.assign(meter.values, message.dictionary);
  meter.info = message.info;
  if (!known) {
    const unnamed = message.info.meter_manufacturer;  // a meter first known by its manufacturer got its id
    if (unnamed !== message.meter) state.meters.delete(unnamed);
    state.meters.set(message.meter, meter);
    state.meters = new Map([...state.meters].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
  }
  setHealth(message.health);
  document.body.dataset.seq = String(message.seq);
  if (state.selected === null || !state.meters.has(state.selected)) {
    switchTo(chosenMeter());
    return;
  }
  if (!known) drawNav();
  if (message.meter !== state.selected) return;
  drawValues();
  addPower(message.t, message.dictionary);
  addEnergy(message.energy);
  if (state.charts.power) drawPower();
  if (state.charts.energy) drawEnergy();
}

function setLink(text, kind) {
  const link = $("link");
  link.textContent = text;
  link.className = `link ${kind}`;
}

function connect() {
  const source = new EventSource("api/events");
  state.source = source;
  source.addEventListener("open", () => {
    setLink(state.live ? "live" : "recording", "up");
    state.loading = reload().catch(() => setLink("reloading", "waiting"));
  });
  source.addEventListener("message", onMessage);
  source.addEventListener("error", () => {
    setLink("reconnecting", "down");
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(connect, 2000);  // the browser gave up (e.g. an error page while restarting): start anew
    }
  });
}

function switchTo(key) {
  if (state.pending !== null) return;  // a load is running: it ends with the newest state
  state.pending = [];
  select(key).finally(() => {
    const pending = state.pending;
    state.pending = null;
    for (const message of pending) apply(message);
  });
}

window.addEventListener("hashchange", () => switchTo(chosenMeter()));
window.addEventListener("resize", () => {
  for (const [name, chart] of Object.entries(state.charts)) {
    if (chart) chart.setSize({width: chartWidth(`${name}-chart`), height: chart.height});
  }
});
setInterval(drawHealth, 1000);
connect();
