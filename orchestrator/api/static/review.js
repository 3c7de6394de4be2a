// selfspec dashboard, review panel (loaded after app.js, whose helpers it uses: $, el, api, getJSON, state).
"use strict";

// The round's instructions (dropped ones too) with their samples: reject, restore or edit a sample, then
// approve the run. Everything goes through the same REST endpoints a script would use.

const runPath = (suffix = "") => `/v1/runs/${encodeURIComponent(state.runId)}${suffix}`;

function renderReviewStatus(run) {
  const awaiting = run.status === "awaiting_review";
  $("review-banner").hidden = !awaiting;
  $("review-banner").textContent = awaiting
    ? `Round ${run.round} is synthesised and waits for your review: reject, restore or edit samples, then approve ` +
      "to export (and train) it."
    : "";
  $("review-approve").disabled = run.active || !(awaiting || run.status === "completed");
  $("review-approve").title = run.status === "completed"
    ? "export the finished run's datasets again as reviewed (adapters are not retrained)"
    : "export (and train) the reviewed round";
  const verdicts = new Set(), statuses = new Set();
  for (const r of Object.values(run.rounds)) {
    Object.keys(r.verdicts || {}).forEach((v) => verdicts.add(v));
    Object.keys(r.gates || {}).forEach((g) => statuses.add(g));
    if (r.samples_failed) statuses.add("failed");
  }
  addFilterOptions($("review-filter-verdicts"), "verdict", [...verdicts].sort());
  addFilterOptions($("review-filter-statuses"), "status", [...statuses].sort());
  if (awaiting && state.status !== null && state.status !== run.status) loadReview(true);
  state.status = run.status;
}

function addFilterOptions(group, kind, names) {
  for (const name of names) {
    const value = `${kind}:${name}`;
    if (![...group.children].some((o) => o.value === value)) group.append(el("option", { value }, name));
  }
}

function datasetState(item) {
  const edited = item.edited ? " · edited" : "";
  if (!item.sample) return item.verdict === "kept" ? "no response yet" : `dropped: ${item.verdict}`;
  if (item.decision === "rejected") return `rejected${edited}`;
  if (item.decision === "restored") return `restored${edited}`;
  if (item.included) return `included${edited}`;
  return `${item.sample.status === "failed" ? "failed" : "gated"}: ${item.sample.status}`;
}

function reviewRow(item, index) {
  const label = item.sample ? `${item.verdict} · ${item.sample.status}` : item.verdict;
  return el("tr", {
    class: `selectable ${item.included ? "in" : "out"}`, tabIndex: 0, onclick: () => selectReview(index),
    dataset: { index: String(index), instructionId: item.instruction_id, sampleId: item.sample ? item.sample.id : "" },
  }, el("td", {}, item.seq), el("td", {}, item.round), el("td", {}, label),
     el("td", {}, item.instruction.slice(0, 140)), el("td", { class: "dataset-state" }, datasetState(item)));
}

async function loadReview(reset) {
  const review = state.review;
  if (!state.runId || (review.loading && !reset)) return;
  review.loading = true;
  if (reset) {
    review.generation += 1;
    review.cursor = 0;
    review.items = [];
    review.selected = -1;
    $("review-table").tBodies[0].replaceChildren();
    $("review-detail").hidden = true;
  }
  const generation = review.generation;
  const params = new URLSearchParams({ cursor: review.cursor, limit: 50 });
  const [kind, value] = $("review-filter").value.split(":");
  if (kind && value) params.set(kind, value);
  if ($("review-round").value) params.set("round", $("review-round").value);
  const q = $("review-search").value.trim();
  if (q) params.set("q", q);
  try {
    const page = await getJSON(runPath(`/review/items?${params}`));
    if (generation !== review.generation) return;  // a reload started meanwhile
    review.cursor = page.next_cursor;
    const body = $("review-table").tBodies[0];
    for (const item of page.items) {
      review.items.push(item);
      body.append(reviewRow(item, review.items.length - 1));
    }
    if (!review.items.length) body.append(el("tr", {}, el("td", { colSpan: 5, class: "muted" }, "nothing matches")));
    $("review-more").disabled = !page.has_more;
  } catch (err) { report(err); } finally { review.loading = false; }
}

function selectReview(index, { focus = true } = {}) {
  const review = state.review;
  if (index < 0 || index >= review.items.length) return;
  review.selected = index;
  const rows = $("review-table").tBodies[0].rows;
  for (const row of rows) row.classList.toggle("selected", row.dataset.index === String(index));
  if (focus && rows[index]) rows[index].focus();
  showReviewItem(review.items[index]);
}

function showReviewItem(item) {
  $("review-detail").hidden = false;
  $("review-editor").hidden = true;
  $("review-response").hidden = false;
  $("review-instruction").textContent = item.instruction;
  $("review-input").textContent = item.input || "(none)";
  $("review-verdict").textContent = item.verdict + (item.reason ? ` (${item.reason})` : "");
  const sample = item.sample;
  const by = item.reviewed_by ? ` · last change by ${item.reviewed_by} at ${item.reviewed_at}` : "";
  $("review-state").textContent = `${datasetState(item)}${by}`;
  $("review-status").textContent = sample ? sample.status + (sample.error ? ` (${sample.error})` : "") : "";
  $("review-response").textContent = sample
    ? (sample.response || "(empty)") + (item.edited ? `\n\n[generated: ${sample.generated_response || "(empty)"}]` : "")
    : "(not answered: the instruction was dropped before a response was generated)";
  $("review-meta").textContent = sample ? `${sample.id} · model ${sample.model} · prompt ${sample.prompt_hash}` : "";
  $("review-reject").disabled = !sample || item.decision === "rejected";
  $("review-restore").disabled = !sample || item.included;
  $("review-edit").disabled = !sample;
  const list = $("review-passages");
  const refs = sample ? sample.retrieved : [];
  list.replaceChildren(...(refs.length ? refs.map((d) => el("li", { class: "doc" }, `${d.doc_id} · score ${d.score.toFixed(2)}`))
    : [el("li", { class: "muted" }, sample ? "no passages (k = 0)" : "none")]));
  if (refs.length) showPassageTexts(sample.id, list);
}

async function showPassageTexts(sampleId, list) {
  try {
    const { passages } = await getJSON(runPath(`/samples/${encodeURIComponent(sampleId)}/passages`));
    const current = state.review.items[state.review.selected];
    if (!current || !current.sample || current.sample.id !== sampleId) return;  // another item was opened
    list.replaceChildren(...passages.map((p) => el("li", { class: "doc passage" },
      el("strong", {}, `${p.doc_id} · score ${p.score.toFixed(2)}${p.title ? " · " + p.title : ""}`),
      el("p", { class: "text" }, p.found ? p.text : "(text unavailable from the retriever)"))));
  } catch (err) { report(err); }
}

async function reviewAction(action, json) {
  const index = state.review.selected;
  const item = state.review.items[index];
  if (!item || !item.sample) return;
  try {
    const options = { method: "POST" };
    if (json !== undefined) options.json = json;
    const response = await api(runPath(`/samples/${encodeURIComponent(item.sample.id)}/${action}`), options);
    const result = await response.json();
    Object.assign(item, { decision: result.decision, edited: result.edited, included: result.included,
                          reviewed_by: result.reviewed_by, reviewed_at: result.reviewed_at });
    if (action === "edit") item.sample.response = json.response;
    $("review-table").tBodies[0].rows[index].replaceWith(reviewRow(item, index));
    selectReview(index);
    setConn(result.changed ? `${action}: ${item.sample.id}` : `${action}: nothing to change`);
    loadReviewLog();
  } catch (err) { report(err); }
}

function startEdit() {
  const item = state.review.items[state.review.selected];
  if (!item || !item.sample) return;
  $("review-response-edit").value = item.sample.response;
  $("review-response").hidden = true;
  $("review-editor").hidden = false;
  $("review-response-edit").focus();
}

function cancelEdit() {
  $("review-editor").hidden = true;
  $("review-response").hidden = false;
  const rows = $("review-table").tBodies[0].rows;
  if (rows[state.review.selected]) rows[state.review.selected].focus();
}

function saveEdit() {
  const text = $("review-response-edit").value;
  if (!text.trim()) { setConn("an edited response cannot be empty", true); return; }
  reviewAction("edit", { response: text });
}

async function approveReview() {
  try {
    const run = await (await api(runPath("/approve"), { method: "POST" })).json();
    setConn(`approved: run ${run.status}`);
    if (run.active) follow(state.runId, { resume: true });
    scheduleRefresh();
    loadReviewLog();
  } catch (err) { report(err); }
}

async function loadReviewLog() {
  if (!state.runId) return;
  try {
    const entries = await getJSON(runPath("/review/log?limit=500"));
    $("review-log").replaceChildren(...(entries.length ? entries.map((e) => el("li", { dataset: { action: e.action } },
      `#${e.id} ${e.ts.slice(0, 19).replace("T", " ")} ${e.by} ${e.action}` +
      `${e.sample_id ? " " + e.sample_id : ""}${e.round && !e.sample_id ? " round " + e.round : ""}` +
      `${e.note ? " — " + e.note : ""}`))
      : [el("li", { class: "muted" }, "no review changes yet")]));
  } catch (err) { report(err); }
}

function scheduleReviewLog() {
  if (state.review.logTimer) return;
  state.review.logTimer = setTimeout(() => { state.review.logTimer = null; loadReviewLog(); }, 300);
}

function onReviewKey(event) {
  if ($("review-panel").hidden || event.altKey || event.metaKey) return;
  const target = event.target;
  if (target === $("review-response-edit")) {
    if (event.key === "Escape") { event.preventDefault(); cancelEdit(); }
    if (event.key === "Enter" && event.ctrlKey) { event.preventDefault(); saveEdit(); }
    return;
  }
  if (event.ctrlKey || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)) return;
  const inTable = $("review-table").contains(target);
  const moves = { j: 1, k: -1, ...(inTable ? { ArrowDown: 1, ArrowUp: -1 } : {}) };
  if (event.key in moves) {
    event.preventDefault();
    const next = state.review.selected + moves[event.key];
    selectReview(Math.max(0, Math.min(next, state.review.items.length - 1)));
  } else if (event.key === "/") {
    event.preventDefault();
    $("review-search").focus();
  } else if (event.key === "Enter" && inTable && target.dataset.index !== undefined) {
    event.preventDefault();
    selectReview(Number(target.dataset.index));
  } else if (event.key === "x" && !$("review-reject").disabled) {
    reviewAction("reject");
  } else if (event.key === "r" && !$("review-restore").disabled) {
    reviewAction("restore");
  } else if (event.key === "e" && !$("review-edit").disabled) {
    event.preventDefault();
    startEdit();
  }
}

function initReview() {
  $("review-filters").addEventListener("submit", (event) => { event.preventDefault(); loadReview(true); });
  $("review-filter").addEventListener("change", () => loadReview(true));
  $("review-round").addEventListener("change", () => loadReview(true));
  $("review-more").addEventListener("click", () => loadReview(false));
  $("review-reject").addEventListener("click", () => reviewAction("reject"));
  $("review-restore").addEventListener("click", () => reviewAction("restore"));
  $("review-edit").addEventListener("click", startEdit);
  $("review-save").addEventListener("click", saveEdit);
  $("review-cancel").addEventListener("click", cancelEdit);
  $("review-approve").addEventListener("click", approveReview);
  document.addEventListener("keydown", onReviewKey);
}
