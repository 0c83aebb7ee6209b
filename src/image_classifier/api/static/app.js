// The web page of the API: /metadata and /health on load, one POST /predict per chosen or dropped image.
"use strict";

const CONCURRENCY = 4;
const DEFAULT_TOP_K = 5;
const byId = (id) => document.getElementById(id);
const queue = [];
let running = 0;

class ApiError extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
  }
}

// The one-line reason of an error body's `detail`: a string, or FastAPI's list of validation errors.
function oneLine(detail, fallback) {
  let text = fallback;
  if (typeof detail === "string") {
    text = detail;
  } else if (Array.isArray(detail)) {
    text = detail.map((item) => (item && item.msg ? item.msg : JSON.stringify(item))).join("; ");
  } else if (detail !== undefined && detail !== null) {
    text = JSON.stringify(detail);
  }
  return String(text).replace(/\s+/g, " ").trim();
}

// The JSON body of a successful call; an ApiError with the one-line reason otherwise.
async function callApi(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ApiError(0, `Cannot reach the API: ${error.message}`);
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const fallback = text.trim().split("\n")[0] || response.statusText || "request failed";
    throw new ApiError(response.status, oneLine(body && (body.detail ?? body.reason), fallback));
  }
  return body;
}

function describe(error) {
  return error instanceof ApiError && error.status ? `${error.message} (HTTP ${error.status})` : error.message;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showPageError(error) {
  const box = byId("page-error");
  box.textContent = describe(error);
  box.hidden = false;
}

async function showHealth() {
  const status = byId("health");
  try {
    const health = await callApi("health");
    status.textContent = `Ready: ${health.model} (${health.backend})`;
    status.className = "health ok";
  } catch (error) {
    status.textContent = `Unavailable: ${describe(error)}`;
    status.className = "health down";
  }
}

// A value of the lineage: scalars as text, lists joined, objects as a nested, collapsed list.
function valueNode(value) {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const details = element("details");
    details.append(element("summary", "", `${Object.keys(value).length} entries`), factList(Object.entries(value)));
    return details;
  }
  if (Array.isArray(value)) return document.createTextNode(value.join(", "));
  return document.createTextNode(value === null ? "—" : String(value));
}

function factList(entries, list = element("dl", "facts")) {
  list.replaceChildren();
  for (const [name, value] of entries) {
    const term = element("dt", "", name);
    const data = element("dd");
    data.append(valueNode(value));
    list.append(term, data);
  }
  return list;
}

function megabytes(bytes) {
  return `${(bytes / 1048576).toFixed(bytes < 1048576 ? 2 : 0)} MiB`;
}

async function showMetadata() {
  let meta;
  try {
    meta = await callApi("metadata");
  } catch (error) {
    showPageError(error);
    return;
  }
  const [channels, height, width] = meta.input_size;
  factList(
    [
      ["Model", meta.model],
      ["Backend", meta.backend],
      ["Input size", `${width} × ${height} px, ${channels} channels`],
      ["Classes", meta.classes.length],
      ["Upload limit", `${megabytes(meta.limits.max_upload_bytes)} per image`],
    ],
    byId("model-facts"),
  );
  byId("class-count").textContent = meta.classes.length;
  byId("classes").replaceChildren(...meta.classes.map((name) => element("li", "", name)));
  byId("classes-box").open = meta.classes.length <= 30;
  const lineage = Object.entries(meta.lineage || {});
  byId("lineage").replaceChildren(lineage.length ? factList(lineage) : element("p", "", "No lineage recorded."));
  const topK = byId("top-k");
  topK.max = meta.classes.length;
  topK.value = Math.min(DEFAULT_TOP_K, meta.classes.length);
}

function topK() {
  const input = byId("top-k");
  const value = Number.parseInt(input.value, 10);
  return Math.max(1, Math.min(Number.isFinite(value) ? value : DEFAULT_TOP_K, Number(input.max) || 1000));
}

function newCard(file) {
  const card = byId("result-template").content.firstElementChild.cloneNode(true);
  const thumb = card.querySelector(".thumb");
  thumb.src = URL.createObjectURL(file);
  thumb.alt = file.name;
  thumb.addEventListener("error", () => {
    thumb.hidden = true;
  });
  card.querySelector(".filename").textContent = file.name;
  card.dataset.state = "pending";
  byId("results").append(card);
  return card;
}

function barRow(name, probability, isTop) {
  const row = element("li", isTop ? "bar-row best" : "bar-row");
  const percent = `${(probability * 100).toFixed(1)} %`;
  const track = element("div", "bar-track");
  const bar = element("div", "bar");
  bar.style.width = `${Math.max(0, Math.min(1, probability)) * 100}%`;
  track.append(bar);
  row.append(element("span", "bar-name", name), track, element("span", "bar-value", percent));
  row.title = `${name}: ${percent}`;
  row.dataset.label = name;
  row.dataset.probability = probability;
  return row;
}

function showPrediction(card, prediction, milliseconds) {
  card.querySelector(".status").hidden = true;
  card.querySelector(".label").textContent = prediction.label;
  card.querySelector(".confidence").textContent = `${(prediction.confidence * 100).toFixed(1)} %`;
  card.querySelector(".prediction").hidden = false;
  const entries = Object.entries(prediction.top_k).sort((a, b) => b[1] - a[1]);
  card.querySelector(".bars").replaceChildren(...entries.map(([name, p], i) => barRow(name, p, i === 0)));
  card.querySelector(".latency").textContent = `Latency: ${Math.round(milliseconds)} ms`;
  card.dataset.state = "done";
}

function showError(card, error, milliseconds) {
  card.querySelector(".status").hidden = true;
  const box = card.querySelector(".error");
  box.textContent = describe(error);
  box.hidden = false;
  card.querySelector(".latency").textContent = `Latency: ${Math.round(milliseconds)} ms`;
  card.dataset.state = "error";
}

async function classify(file, card) {
  const form = new FormData();
  form.append("file", file, file.name);
  const started = performance.now();
  try {
    const body = await callApi(`predict?top_k=${topK()}`, { method: "POST", body: form });
    showPrediction(card, body.predictions[0], performance.now() - started);
  } catch (error) {
    showError(card, error, performance.now() - started);
  }
}

function pump() {
  while (running < CONCURRENCY && queue.length > 0) {
    const task = queue.shift();
    running += 1;
    task().finally(() => {
      running -= 1;
      pump();
    });
  }
}

function addFiles(files) {
  for (const file of files) {
    const card = newCard(file);
    queue.push(() => classify(file, card));
  }
  pump();
}

function clearResults() {
  for (const thumb of document.querySelectorAll("#results .thumb")) URL.revokeObjectURL(thumb.src);
  byId("results").replaceChildren();
}

function wireUpload() {
  const input = byId("files");
  const drop = byId("drop");
  input.addEventListener("change", () => {
    addFiles([...input.files]);
    input.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    addFiles([...event.dataTransfer.files]);
  });
  // A file dropped beside the drop zone must not replace the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  byId("clear").addEventListener("click", clearResults);
}

wireUpload();
showHealth();
showMetadata();
