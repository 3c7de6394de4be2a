// selfspec dashboard: plain JS against the orchestrator REST API. Every string from the API is
// rendered as text (textContent), never as HTML: samples are model output.
"use strict";

const TOKEN_KEY = "selfspec-api-token";
const EVENT_TYPES = ["run_created", "status", "instructions", "sample", "round_done", "adapter", "review", "estimate"];
const $ = (id) => document.getElementById(id);
const state = { runId: null, round: 1, source: null, cursor: 0, refreshTimer: null, events: 0, loading: false,
                lastEventId: 0, status: null,
                review: { cursor: 0, generation: 0, items: [], selected: -1, loading: false, logTimer: null } };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token()) headers.set("Authorization", `Bearer ${token()}`);
  if (options.json !== undefined) {
    headers.set("Content-Type", "application/json");
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    $("token-form").hidden = false;
    setConn("token required", true);
    throw new Unauthorized("token required");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = JSON.stringify((await response.json()).detail, null, 1); } catch (_) { /* not JSON */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response;
}

const getJSON = async (path) => (await api(path)).json();

function setConn(text, bad = false) {
  $("conn").textContent = text;
  $("conn").className = bad ? "error" : "muted";
}

function report(err) {
  if (!(err instanceof Unauthorized)) setConn(String(err.message || err), true);
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// ---- runs ----

async function loadRuns() {
  const runs = await getJSON("/v1/runs");
  const body = $("runs-table").tBodies[0];
  body.replaceChildren(...runs.map((run) => el("tr", {
    class: `selectable${run.id === state.runId ? " selected" : ""}`, onclick: () => selectRun(run.id),
    dataset: { runId: run.id },
  }, el("td", {}, run.id), el("td", {}, el("span", { class: `badge ${run.status}` }, run.status)),
     el("td", {}, run.phase), el("td", {}, run.active ? "live" : ""))));
  setConn(`${runs.length} runs`);
  if (!state.runId && location.hash.length > 1) selectRun(decodeURIComponent(location.hash.slice(1)));
}

function stageRow(label, value, max, extra = "") {
  return el("div", { class: "stage" }, el("span", {}, label),
    el("progress", { max: Math.max(max, 1), value: Math.min(value, Math.max(max, 1)) }),
    el("span", {}, `${value} / ${max}${extra}`));
}

function renderRun(run) {
  $("run-title").textContent = run.name ? `${run.id}` : run.id;
  $("run-status").textContent = run.status;
  $("run-status").className = `badge ${run.status}`;
  $("run-phase").textContent = run.phase;
  state.round = run.round;
  $("run-round").textContent = `${run.round} of ${run.rounds_total}`;
  $("run-rate").textContent = run.rate_per_s ? `${run.rate_per_s.toFixed(2)} samples/s` : "idle";
  $("run-eta").textContent = fmtSeconds(run.eta_s);
  $("run-reason").textContent = run.reason || "";
  $("run-cancel").disabled = !run.active;
  $("run-resume").disabled = run.active || run.status === "completed" || run.status === "awaiting_review";
  const blocks = Object.entries(run.rounds).map(([round, r]) => el("div", {},
    el("h3", {}, `Round ${round}`),
    stageRow("prompts", r.prompts, r.prompts),
    stageRow("instructions kept", r.instructions_kept, r.target, ` (${r.instructions_total} parsed)`),
    stageRow("samples", r.samples_ok, r.target, [r.samples_failed ? `${r.samples_failed} failed` : "",
      r.samples_gated ? `${r.samples_gated} gated` : ""].filter(Boolean).map((s) => ` (${s})`).join("")),
    el("div", { class: "muted" }, `queue: ${r.queue_depth} waiting for a response`)));
  $("stages").replaceChildren(...(blocks.length ? blocks : [el("p", { class: "muted" }, "no items yet")]));
  const reasons = Object.entries(run.filter_reasons);
  $("reasons-table").tBodies[0].replaceChildren(...(reasons.length
    ? reasons.map(([verdict, n]) => el("tr", {}, el("td", {}, verdict), el("td", {}, n)))
    : [el("tr", {}, el("td", { colSpan: 2, class: "muted" }, "nothing dropped"))]));
  const gates = Object.entries(run.gate_reasons || {});
  $("gates-table").tBodies[0].replaceChildren(...(gates.length
    ? gates.map(([gate, n]) => el("tr", {}, el("td", {}, gate), el("td", {}, n)))
    : [el("tr", {}, el("td", { colSpan: 2, class: "muted" }, "nothing gated"))]));
  for (const rounds of [$("samples-round"), $("review-round")]) {
    for (const round of Object.keys(run.rounds)) {
      if (![...rounds.options].some((o) => o.value === round)) rounds.append(el("option", { value: round }, round));
    }
  }
  renderReviewStatus(run);
}

// A run of a config that was dry-run first ends with an `estimate` event: (phase, estimated s, actual s) rows.
function renderEstimate(payload) {
  const phases = (payload && payload.data && payload.data.phases) || [];
  const fmt = (s) => (s === null || s === undefined ? "-" : Math.round(s).toString());
  $("estimate-table").tBodies[0].replaceChildren(...phases.map((row) => el("tr", {},
    el("td", {}, row.phase), el("td", {}, fmt(row.estimated_s)), el("td", {}, fmt(row.actual_s)))));
  $("estimate-block").hidden = phases.length === 0;
}

async function refreshRun() {
  if (!state.runId) return;
  try { renderRun(await getJSON(`/v1/runs/${encodeURIComponent(state.runId)}`)); } catch (err) { report(err); }
}

function scheduleRefresh() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => { state.refreshTimer = null; refreshRun(); loadRuns().catch(report); }, 400);
}

function logEvent(type, payload) {
  state.events += 1;
  $("events-count").textContent = `(${state.events})`;
  const detail = payload && payload.data ? JSON.stringify(payload.data) : "";
  const log = $("events-log");
  log.prepend(el("li", {}, `#${payload ? payload.id : "-"} ${type} ${detail}`));
  while (log.children.length > 50) log.lastChild.remove();
}

// EventSource cannot send the bearer header, and the token must not go in a URL (access logs): with a
// token, trade it (in a header) for a short-lived ticket of this run's stream.
async function streamUrl(runId, after) {
  const base = `/v1/runs/${encodeURIComponent(runId)}/events`;
  const params = new URLSearchParams();
  if (after) params.set("after", String(after));
  if (token()) {
    const response = await api(`${base}/ticket`, { method: "POST" });
    params.set("ticket", (await response.json()).ticket);
  }
  const query = params.toString();
  return query ? `${base}?${query}` : base;
}

async function follow(runId, { resume = false } = {}) {
  if (state.source) state.source.close();
  state.source = null;
  if (!resume) {
    state.events = 0;
    state.lastEventId = 0;
    $("events-log").replaceChildren();
    renderEstimate(null);
  }
  let url;
  try { url = await streamUrl(runId, state.lastEventId); } catch (err) { report(err); return; }
  if (state.runId !== runId) return;  // another run was selected meanwhile
  const source = new EventSource(url);
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (message) => {
      if (message.lastEventId) state.lastEventId = Number(message.lastEventId) || state.lastEventId;
      const payload = JSON.parse(message.data);
      logEvent(type, payload);
      if (type === "estimate") renderEstimate(payload);
      scheduleRefresh();
      if (type === "review") scheduleReviewLog();
      if (type === "sample" && $("samples-table").tBodies[0].children.length < 20) loadSamples(false);
    });
  }
  source.addEventListener("end", () => { source.close(); setConn("run finished; stream closed"); scheduleRefresh(); });
  source.onerror = () => {
    setConn("event stream interrupted; reconnecting…", true);
    // The browser retries by itself with the same URL; once that is refused (an expired ticket),
    // the source is closed: follow again with a fresh ticket from the last event seen.
    if (source.readyState === EventSource.CLOSED && state.source === source) {
      setTimeout(() => { if (state.source === source) follow(runId, { resume: true }); }, 1000);
    }
  };
  source.onopen = () => setConn(`following ${runId}`);
  state.source = source;
}

async function selectRun(runId) {
  state.runId = runId;
  location.hash = encodeURIComponent(runId);
  $("run-panel").hidden = false;
  $("samples-panel").hidden = false;
  $("review-panel").hidden = false;
  $("sample-detail").hidden = true;
  $("review-detail").hidden = true;
  state.status = null;
  for (const row of $("runs-table").tBodies[0].rows) row.classList.toggle("selected", row.dataset.runId === runId);
  await refreshRun();
  await Promise.all([loadSamples(true), loadReview(true), loadReviewLog()]);
  follow(runId);
}

async function runAction(action) {
  try {
    await api(`/v1/runs/${encodeURIComponent(state.runId)}/${action}`, { method: "POST" });
    if (action === "resume") follow(state.runId);
    scheduleRefresh();
  } catch (err) { report(err); }
}

async function download(format) {
  try {
    const response = await api(`/v1/runs/${encodeURIComponent(state.runId)}/dataset?round=${state.round}&format=${format}`);
    const url = URL.createObjectURL(await response.blob());
    el("a", { href: url, download: `${state.runId}-${format}.jsonl` }).click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) { report(err); }
}

async function createRun() {
  $("new-run-error").hidden = true;
  let body;
  try { body = JSON.parse($("new-run-config").value); } catch (err) {
    $("new-run-error").textContent = `not JSON: ${err.message}`;
    $("new-run-error").hidden = false;
    return;
  }
  try {
    const created = await (await api("/v1/runs", { method: "POST", json: body })).json();
    await loadRuns();
    selectRun(created.id);
  } catch (err) {
    $("new-run-error").textContent = String(err.message || err);
    $("new-run-error").hidden = false;
  }
}

// ---- samples ----

async function loadSamples(reset) {
  if (!state.runId || (state.loading && !reset)) return;
  state.loading = true;
  if (reset) {
    state.generation = (state.generation || 0) + 1;
    state.cursor = 0;
    $("samples-table").tBodies[0].replaceChildren();
  }
  const generation = state.generation;
  const params = new URLSearchParams({ cursor: state.cursor, limit: 25, status: $("samples-status").value });
  if ($("samples-round").value) params.set("round", $("samples-round").value);
  try {
    const page = await getJSON(`/v1/runs/${encodeURIComponent(state.runId)}/samples?${params}`);
    if (generation !== state.generation) return;  // a reload started meanwhile
    state.cursor = page.next_cursor ?? state.cursor;
    const body = $("samples-table").tBodies[0];
    for (const sample of page.items) {
      body.append(el("tr", { class: "selectable", onclick: () => showSample(sample), dataset: { sampleId: sample.id } },
        el("td", {}, sample.seq), el("td", {}, sample.round), el("td", {}, sample.instruction.slice(0, 140))));
    }
    $("samples-more").disabled = !page.has_more;
  } catch (err) { report(err); } finally { state.loading = false; }
}

async function showSample(sample) {
  $("sample-detail").hidden = false;
  $("sample-instruction").textContent = sample.instruction;
  $("sample-input").textContent = sample.input || "(none)";
  $("sample-response").textContent = sample.response || `(empty: ${sample.error})`;
  $("sample-meta").textContent = `${sample.id} · model ${sample.model} · ${sample.status}`;
  const list = $("sample-passages");
  list.replaceChildren(...sample.retrieved.map((d) => el("li", {}, `${d.doc_id} (score ${d.score.toFixed(2)})`)));
  if (!sample.retrieved.length) list.replaceChildren(el("li", { class: "muted" }, "no passages (k = 0)"));
  try {
    const url = `/v1/runs/${encodeURIComponent(state.runId)}/samples/${encodeURIComponent(sample.id)}/passages`;
    const { passages } = await getJSON(url);
    list.replaceChildren(...passages.map((p) => el("li", { class: "passage" },
      el("strong", {}, `${p.doc_id} · ${p.score.toFixed(2)}${p.title ? " · " + p.title : ""}`),
      el("p", { class: "text" }, p.found ? p.text : "(text unavailable from the retriever)"))));
  } catch (err) { report(err); }
}

// ---- adapters ----

async function loadAdapters() {
  const adapters = await getJSON("/v1/adapters");
  const action = (adapter, verb) => el("button", { type: "button", onclick: async () => {
    try {
      await api(`/v1/adapters/${encodeURIComponent(adapter.name)}/${verb}`, { method: "POST" });
      await loadAdapters();
    } catch (err) { report(err); }
  } }, verb);
  $("adapters-table").tBodies[0].replaceChildren(...(adapters.length ? adapters.map((a) => el("tr", {},
    el("td", {}, a.name), el("td", {}, a.run_id ?? ""), el("td", {}, a.round ?? ""),
    el("td", {}, a.loaded === null ? "?" : a.loaded ? "yes" : "no"),
    el("td", {}, action(a, a.loaded ? "unload" : "load"))))
    : [el("tr", {}, el("td", { colSpan: 5, class: "muted" }, "no adapters yet"))]));
}

// ---- evaluations ----

async function showPlot(evalId) {
  try {
    const blob = await (await api(`/v1/evaluations/${encodeURIComponent(evalId)}/plot`)).blob();
    const img = $("eval-plot");
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    img.hidden = false;
  } catch (err) { report(err); }
}

async function loadEvaluations() {
  const evaluations = await getJSON("/v1/evaluations");
  $("evals-table").tBodies[0].replaceChildren(...(evaluations.length ? evaluations.map((e) => {
    const macro = e.results.filter((r) => r.task === "macro_average")
      .map((r) => `${r.model}, ${r.shots}: ${r.value.toFixed(1)}`).join("; ");
    const progress = e.progress ? ` ${e.progress.done}/${e.progress.total}` : "";
    return el("tr", {}, el("td", {}, e.id), el("td", {}, `${e.status}${progress}`),
      el("td", {}, macro || e.error || ""),
      el("td", {}, e.report_available ? el("button", { type: "button", onclick: () => showPlot(e.id) }, "plot") : ""));
  }) : [el("tr", {}, el("td", { colSpan: 4, class: "muted" }, "no evaluations yet"))]));
}

// ---- start ----

async function loadAll() {
  try {
    await loadRuns();
    $("token-form").hidden = true;
    await Promise.all([loadAdapters(), loadEvaluations()]);
  } catch (err) { report(err); }
}

function init() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value);
    $("token-input").value = "";
    loadAll();
    if (state.runId) follow(state.runId);
  });
  $("runs-refresh").addEventListener("click", () => loadRuns().catch(report));
  $("adapters-refresh").addEventListener("click", () => loadAdapters().catch(report));
  $("evals-refresh").addEventListener("click", () => loadEvaluations().catch(report));
  $("run-cancel").addEventListener("click", () => runAction("cancel"));
  $("run-resume").addEventListener("click", () => runAction("resume"));
  $("new-run-submit").addEventListener("click", createRun);
  $("samples-reload").addEventListener("click", () => loadSamples(true));
  $("samples-more").addEventListener("click", () => loadSamples(false));
  initReview();
  for (const button of document.querySelectorAll("button.dataset")) {
    button.addEventListener("click", () => download(button.dataset.format));
  }
  loadAll();
}

document.addEventListener("DOMContentLoaded", init);
