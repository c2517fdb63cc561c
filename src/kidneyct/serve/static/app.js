// kidneyct web page: plain JS, no build step, nothing fetched from outside this server.
"use strict";

const $ = (id) => document.getElementById(id);
let previewUrl = null;
// A server started with a token wants it on every API call; the page takes it from its address
// (.../#token=...): browsers send the part after # to no server and put it in no Referer.
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const authHeaders = token ? { Authorization: `Bearer ${token}` } : {};

function setStatus(text) { $("status").textContent = text; }

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (e) {
    return response.statusText;
  }
}

async function post(path, file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const response = await fetch(path, { method: "POST", body: form, headers: authHeaders });
  if (!response.ok) throw new Error(`${response.status}: ${await errorText(response)}`);
  return response;
}

function renderBars(result) {
  const bars = $("bars");
  bars.textContent = "";
  for (const name of result.classes) {
    const p = result.probabilities[name];
    const row = document.createElement("div");
    row.className = "bar" + (name === result.call ? " predicted" : "");
    row.dataset.class = name;
    const label = document.createElement("div");
    label.className = "label";
    const left = document.createElement("span");
    left.textContent = name;
    const right = document.createElement("span");
    right.className = "value";
    right.textContent = (100 * p).toFixed(1) + "%";
    label.append(left, right);
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = (100 * p).toFixed(1) + "%";
    track.append(fill);
    row.append(label, track);
    bars.append(row);
  }
  $("predicted").textContent = result.call === null ? "no call (out of scope)" : result.call;
  const scope = $("scope");
  scope.classList.toggle("out", result.in_scope === false);
  scope.textContent = result.in_scope === false
    ? `Out of scope: ${result.scope_reason}. The model was trained on slices through the kidneys; do not read this as a call.`
    : `In scope: ${result.scope_reason}.`;
  const threshold = result.threshold === null ? "none (most probable class)" : result.threshold.toFixed(3);
  const t = result.timing_ms;
  $("details").textContent = `Operating threshold: ${threshold}. ${result.image.kind.toUpperCase()} ` +
    `${result.image.width}x${result.image.height}. Read ${t.read} ms, inference ${t.inference} ms.`;
  const warnings = $("warnings");
  warnings.textContent = "";
  for (const w of result.warnings) {
    const li = document.createElement("li");
    li.textContent = w;
    warnings.append(li);
  }
}

function loadImage(img, blob) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("image did not load"));
    img.src = URL.createObjectURL(blob);
  });
}

async function analyse(file) {
  showError("");
  $("result").hidden = true;
  $("overlay").removeAttribute("src");
  $("result").dataset.state = "working";
  setStatus(`Analysing ${file.name}…`);
  try {
    const result = await (await post("/predict", file)).json();
    renderBars(result);
    // The model's input as the server sees it (also the preview for DICOM, which browsers cannot show).
    const input = await (await post("/explain?view=input", file)).blob();
    await loadImage($("model-input"), input);
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    $("preview").onerror = () => { $("preview").src = $("model-input").src; };
    $("preview").src = previewUrl;
    $("result").hidden = false;
    setStatus(`Computing the Grad-CAM heatmap for ${file.name}…`);
    const overlay = await (await post("/explain", file)).blob();
    await loadImage($("overlay"), overlay);
    $("overlay").hidden = !$("heatmap-toggle").checked;
    $("result").dataset.state = "done";
    setStatus(`${file.name}: ${result.call === null ? "no call (out of scope)" : result.call}`);
  } catch (error) {
    $("result").dataset.state = "error";
    setStatus("");
    showError(`${file.name}: ${error.message}`);
  }
}

$("file").addEventListener("change", (event) => {
  if (event.target.files.length) analyse(event.target.files[0]);
});
$("heatmap-toggle").addEventListener("change", (event) => { $("overlay").hidden = !event.target.checked; });

const drop = $("drop");
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
}
for (const name of ["dragleave", "drop"]) {
  drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.remove("over"); });
}
drop.addEventListener("drop", (event) => {
  if (event.dataTransfer.files.length) analyse(event.dataTransfer.files[0]);
});

fetch("/model", { headers: authHeaders }).then((r) => r.json()).then((card) => {
  $("disclaimer").textContent = card.disclaimer;
  $("footer-disclaimer").textContent = card.intended_use ? `Intended use: ${card.intended_use}.` : "";
  const data = card.training_data || {};
  const synthetic = data.synthetic ? "synthetic phantoms" : (data.dataset || "unknown data");
  $("model-line").textContent = `Model: ${card.architecture.model} (${card.classes.join(", ")}), trained on ` +
    `${synthetic}, ${data.split_kind || "?"} split.`;
}).catch(() => { $("model-line").textContent = "Model card unavailable."; });
