// gpt-classifier's page: plain JavaScript, no dependencies. It calls the server's own API with
// relative URLs (so it also works under a reverse proxy's prefix) and writes every piece of
// text with textContent, never as HTML.
"use strict";

const PALETTE = ["#4f46e5", "#e11d48", "#0891b2", "#ca8a04", "#16a34a", "#9333ea", "#ea580c", "#475569"];

const state = {
  info: null,
  classes: [],
  results: [],      // {index, text, label, probability, probabilities, fields}
  columns: ["text"], // the file's columns (download keeps them, as classify --output does)
  source: "messages",
  sort: { key: "index", dir: "asc" },
};

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function classColour(name) {
  const index = state.classes.indexOf(name);
  return PALETTE[(index < 0 ? 0 : index) % PALETTE.length];
}

function percent(p) {
  return (100 * p).toFixed(1) + "\u00a0%";
}

// --- errors and status -----------------------------------------------------------------------

function showError(message) {
  const line = $("error");
  line.textContent = String(message).replace(/\s+/g, " ").trim();
  line.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setStatus(message) {
  $("status").textContent = message;
}

async function callApi(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new Error("cannot reach the server (" + error.message + ")");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
    throw new Error(detail + " (HTTP " + response.status + ")");
  }
  return body;
}

// --- model panel -----------------------------------------------------------------------------

function describe(info) {
  const rows = [];
  const chips = el("span", {}, info.classes.map((name) =>
    el("span", { class: "chip", text: name, style: { background: classColour(name) } })));
  rows.push(["Classes", chips]);
  rows.push(["Base model", (info.base_model || "?") + (info.init === "random" ? " (random init)" : "")]);
  rows.push(["Trained part", info.trainable || "unknown"]);
  rows.push(["Pooling", info.pooling]);
  const padded = info.pad_length ? ", padded to " + info.pad_length : "";
  rows.push(["Max length", info.max_length + " tokens" + padded]);
  if (info.test) {
    rows.push(["Test accuracy", percent(info.test.accuracy) +
      (info.test.examples ? " of " + info.test.examples : "")]);
    rows.push(["Test macro F1", info.test.macro_f1 == null ? "unknown" : info.test.macro_f1.toFixed(4)]);
  } else {
    rows.push(["Test metrics", "none saved with the run"]);
  }
  if (info.trained_at) {
    const when = new Date(info.trained_at);
    const shown = isNaN(when) ? info.trained_at
      : when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    rows.push(["Trained", shown]);
  }
  rows.push(["Runs on", info.device + ", " + info.precision]);
  if (info.run_dir) rows.push(["Run", info.run_dir]);
  rows.push(["Limits", info.max_texts + " texts, " + Math.round(info.max_request_bytes / 1024) +
    " KiB per request"]);
  const list = $("model-info");
  list.replaceChildren();
  for (const [term, value] of rows) {
    list.append(el("dt", { text: term }), el("dd", {}, [value]));
  }
  $("model-title").textContent = (info.base_model || "") + " · " + info.classes.join(" / ");
}

async function loadInfo() {
  try {
    const info = await callApi("info");
    state.info = info;
    state.classes = info.classes;
    describe(info);
  } catch (error) {
    $("model-info").replaceChildren(el("dt", { text: "Unavailable" }), el("dd", { text: "" }));
    showError(error.message);
  }
}

// --- results table -----------------------------------------------------------------------------

function columnsOfTable() {
  const columns = [
    { key: "index", title: "#", numeric: true },
    { key: "text", title: "Text" },
    { key: "label", title: "Label" },
    { key: "probability", title: "Probability", numeric: true },
  ];
  for (const name of state.classes) {
    columns.push({ key: "p:" + name, title: "p(" + name + ")", numeric: true });
  }
  return columns;
}

function sortValue(row, key) {
  if (key.startsWith("p:")) return row.probabilities[key.slice(2)];
  return row[key];
}

function sortedResults() {
  const { key, dir } = state.sort;
  const sign = dir === "asc" ? 1 : -1;
  return [...state.results].sort((a, b) => {
    const x = sortValue(a, key);
    const y = sortValue(b, key);
    const order = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
    return sign * order || a.index - b.index;
  });
}

function renderTable() {
  const header = $("results-header");
  header.replaceChildren();
  for (const column of columnsOfTable()) {
    const button = el("button", { type: "button", class: "sort-button", text: column.title });
    button.addEventListener("click", () => sortBy(column));
    const th = el("th", { scope: "col", "data-key": column.key, class: column.numeric ? "num" : "" },
      [button]);
    if (state.sort.key === column.key) {
      th.setAttribute("aria-sort", state.sort.dir === "asc" ? "ascending" : "descending");
    }
    header.append(th);
  }
  const body = $("results-body");
  body.replaceChildren();
  for (const row of sortedResults()) {
    const colour = classColour(row.label);
    const bar = el("div", { class: "bar" }, [
      el("span", { style: { width: (100 * row.probability).toFixed(1) + "%", background: colour } }),
    ]);
    const cells = [
      el("td", { class: "num", text: String(row.index) }),
      el("td", { class: "text", text: row.text }),
      el("td", { class: "label" }, [el("span", { class: "chip", text: row.label, style: { background: colour } })]),
      el("td", { class: "probability" }, [
        el("div", { class: "prob" }, [bar, el("span", { class: "prob-value", text: percent(row.probability) })]),
      ]),
    ];
    for (const name of state.classes) {
      cells.push(el("td", { class: "num", text: row.probabilities[name].toFixed(4) }));
    }
    body.append(el("tr", {}, cells));
  }
  $("results-card").hidden = false;
}

function sortBy(column) {
  if (state.sort.key === column.key) {
    state.sort.dir = state.sort.dir === "asc" ? "desc" : "asc";
  } else {
    state.sort = { key: column.key, dir: column.numeric && column.key !== "index" ? "desc" : "asc" };
  }
  renderTable();
}

function showResults(texts, answer, fields, columns, source) {
  state.results = answer.predictions.map((prediction, i) => ({
    index: i + 1,
    text: texts[i],
    label: prediction.label,
    probability: prediction.probability,
    probabilities: prediction.probabilities,
    fields: fields ? fields[i] : { text: texts[i] },
  }));
  state.columns = columns;
  state.source = source;
  state.sort = { key: "index", dir: "asc" };
  const count = texts.length;
  let summary = count + (count === 1 ? " text" : " texts") + " · " + answer.seconds.toFixed(2) + " s";
  if (answer.truncated) {
    summary += " · " + answer.truncated + " cut to " + state.info.max_length + " tokens";
  }
  $("results-summary").textContent = (source === "messages" ? "" : source + " · ") + summary;
  renderTable();
}

// --- download ------------------------------------------------------------------------------------

function csvField(value) {
  const text = String(value);
  return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

function predictionsCsv() {
  // As `classify --file --output` writes: the row's columns, then the prediction, then every
  // class's probability.
  const header = [...state.columns, "predicted_label", "probability",
    ...state.classes.map((name) => "probability_" + name)];
  const lines = [header.map(csvField).join(",")];
  for (const row of [...state.results].sort((a, b) => a.index - b.index)) {
    const values = state.columns.map((column) => row.fields[column] ?? "");
    values.push(row.label, row.probability.toFixed(6));
    for (const name of state.classes) values.push(row.probabilities[name].toFixed(6));
    lines.push(values.map(csvField).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

function download() {
  const blob = new Blob([predictionsCsv()], { type: "text/csv;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const stem = state.source === "messages" ? "messages" : state.source.replace(/\.[^.]*$/, "");
  const link = el("a", { href: url, download: stem + "-predictions.csv" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// --- explanation ---------------------------------------------------------------------------------

function renderExplanation(answer) {
  const scores = answer.tokens.map((token) => token.score);
  const largest = Math.max(1e-9, ...scores.map(Math.abs));
  const text = $("explain-text");
  text.replaceChildren();
  for (const token of answer.tokens) {
    const strength = Math.min(1, Math.abs(token.score) / largest);
    const rgb = token.score >= 0 ? "var(--towards)" : "var(--away)";
    const sign = token.score >= 0 ? "+" : "−";
    const span = el("span", {
      class: "token",
      text: token.token,
      "data-score": token.score.toFixed(4),
      title: sign + Math.abs(token.score).toFixed(2) + " log-odds for " + answer.label +
        "; without it p(" + answer.label + ") = " + token.probability_without.toFixed(4),
      style: { backgroundColor: "rgba(" + rgb + ", " + (0.85 * strength).toFixed(3) + ")" },
    });
    text.append(span);
  }
  const top = answer.tokens
    .filter((token) => token.score > 0 && token.token.trim())
    .sort((a, b) => b.score - a.score)
    .slice(0, 3)
    .map((token) => "“" + token.token.trim() + "”");
  let summary = answer.label + ", " + percent(answer.probability) + ".";
  if (top.length) summary += " Strongest evidence: " + top.join(", ") + ".";
  if (answer.truncated) summary += " Only the first " + answer.tokens.length + " tokens are read.";
  $("explain-summary").textContent = summary;
  $("legend-away").textContent = "away from " + answer.label;
  $("legend-towards").textContent = "towards " + answer.label;
  $("explain-card").hidden = false;
}

async function explain(text) {
  try {
    const answer = await callApi("explain", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text }),
    });
    renderExplanation(answer);
  } catch (error) {
    showError("explanation: " + error.message);
  }
}

// --- actions ---------------------------------------------------------------------------------------

let busy = false;

async function withBusy(message, work) {
  if (busy) return;
  busy = true;
  $("classify-button").disabled = true;
  clearError();
  setStatus(message);
  try {
    await work();
  } catch (error) {
    showError(error.message);
  } finally {
    busy = false;
    $("classify-button").disabled = false;
    setStatus("");
  }
}

function submitTexts() {
  const texts = $("texts").value.split(/\r\n|\r|\n/).filter((line) => line.trim());
  if (!texts.length) {
    clearError();
    showError("nothing to classify: type or paste a message (one per line)");
    return;
  }
  withBusy("Classifying…", async () => {
    $("explain-card").hidden = true;
    const answer = await callApi("classify", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ texts }),
    });
    showResults(texts, answer, null, ["text"], "messages");
    if (texts.length === 1) {
      setStatus("Explaining…");
      await explain(texts[0]);
    }
  });
}

function uploadFile(file) {
  withBusy("Reading " + file.name + "…", async () => {
    const form = new FormData();
    form.append("file", file, file.name);
    const column = $("text-column").value.trim();
    if (column) form.append("text_column", column);
    const answer = await callApi("classify/file", { method: "POST", body: form });
    $("explain-card").hidden = true;
    // Every column of any row (JSON lines may differ in their keys), in order of appearance.
    const columns = [...new Set(answer.rows.flatMap((row) => Object.keys(row)))];
    showResults(answer.texts, answer, answer.rows, columns, answer.filename);
  });
}

function init() {
  $("classify-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitTexts();
  });
  $("texts").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submitTexts();
    }
  });
  $("file-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    event.target.value = ""; // the same file can be chosen again
    if (file) uploadFile(file);
  });
  $("download-button").addEventListener("click", download);
  loadInfo();
}

init();
