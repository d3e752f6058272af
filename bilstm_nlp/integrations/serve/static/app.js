// The page: picks a model from /v1/models, posts the text to /v1/annotate and draws the record:
// entities and chunks as displaCy-style marks with their tokens' tags (in the scheme picked)
// below, POS tags under tokens, a classifier's labels as bars, the k best tag sequences as a
// table. No external assets: everything comes from /static.
"use strict";

const $ = (id) => document.getElementById(id);
let models = {};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

async function loadModels() {
  const response = await fetch("/v1/models");
  const body = await response.json();
  for (const model of body.models) {
    models[model.name] = model;
    $("model").append(el("option", { value: model.name }, `${model.name} (${model.task})`));
  }
  $("model").value = body.default;
  fitControls();
}

// k best and the tag scheme mean something only for some models: the others' controls are off.
function fitControls() {
  const model = models[$("model").value];
  $("k").disabled = model.kind !== "tagger";
  const scheme = $("scheme");
  scheme.disabled = !model.scheme;
  if (scheme.disabled) scheme.value = "";
  scheme.options[0].textContent = model.scheme ? `the model's own (${model.scheme})` : "the model's own";
}

function drawSpans(record, kind) {
  const out = el("div", { id: "spans", "data-kind": kind });
  // Offsets count code points (Python's str); a JS string indexes UTF-16 units, so the text is
  // cut as an array of code points: an emoji before an entity would shift every cut by one.
  const points = Array.from(record.text);
  let at = 0;
  for (const span of record.spans) {
    out.append(points.slice(at, span.start).join(""));
    const cls = kind === "chunk" && !["NP", "VP", "PP"].includes(span.label) ? "chunk-other" : span.label;
    out.append(el("mark", { class: `entity ${cls}`, "data-label": span.label, "data-prob": span.score },
      el("span", { class: "text" }, span.text),
      el("span", { class: "label" }, span.label),
      el("span", { class: "prob" }, span.score.toFixed(2))));
    at = span.end;
  }
  out.append(points.slice(at).join(""));
  return out;
}

function drawTags(record) {
  const out = el("div", { id: "tags" });
  for (const token of record.tokens) {
    out.append(el("span", { class: "token", title: `p=${token.score}` },
      token.text, el("span", { class: "tag" }, token.tag)));
  }
  return out;
}

function drawDistribution(record) {
  const out = el("div", { id: "distribution" });
  for (const [label, p] of Object.entries(record.probs).sort((a, b) => b[1] - a[1])) {
    // Through the style object: the page's Content-Security-Policy refuses style attributes.
    const fill = el("span", { class: "fill" });
    fill.style.width = `${Math.round(p * 300)}px`;
    out.append(el("div", { class: "bar", "data-label": label },
      el("span", {}, label), fill, el("span", {}, p.toFixed(3))));
  }
  return out;
}

function drawKbest(record) {
  const out = el("div", { id: "kbest-table" });
  record.kbest.forEach((paths, i) => {
    const table = el("table", {}, el("tr", {}, el("th", {}, `sentence ${i + 1}`), el("th", {}, "p")));
    for (const path of paths) {
      table.append(el("tr", { class: "path" }, el("td", {}, path.tags.join(" ")), el("td", {}, path.prob.toFixed(4))));
    }
    out.append(table);
  });
  return out;
}

async function submit(event) {
  event.preventDefault();
  const model = models[$("model").value];
  const k = model.kind === "tagger" ? Number($("k").value) || 0 : 0;
  const request = { text: $("text").value, model: model.name, k };
  if (!$("scheme").disabled && $("scheme").value) request.scheme = $("scheme").value;
  $("status").textContent = "…";
  const response = await fetch("/v1/annotate", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(request),
  });
  const body = await response.json();
  $("result").replaceChildren();
  $("kbest").replaceChildren();
  if (!response.ok) {
    $("status").textContent = `${response.status}: ${body.error}` + (body.limit ? ` (limit ${body.limit})` : "");
    return;
  }
  $("status").textContent = "";
  const record = body.records[0];
  if (record.probs) $("result").append(drawDistribution(record));
  else if (record.spans) $("result").append(drawSpans(record, model.task === "ner" ? "ner" : "chunk"), drawTags(record));
  else $("result").append(drawTags(record));
  if (record.kbest && record.kbest.length) $("kbest").append(drawKbest(record));
}

$("form").addEventListener("submit", submit);
$("model").addEventListener("change", fitControls);
loadModels();
