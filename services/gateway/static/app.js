// The gateway's web page: a form that posts to /v1/send/form, the result, and a live quality-vs-SNR chart read
// from /v1/quality (which asks Prometheus). No framework and nothing fetched from outside: the page works offline.
// The fields come from /v1/options, the one definition of the send options (unitocom/options.py): the main ones
// have their place in index.html, the rest ("advanced") are made here. Query parameters prefill the fields (by
// option name, e.g. snr_db, channel, pilots; metric; sample=image) and run=1 sends at once, so that a link
// reproduces a request.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#2b6cb0", "#dd6b20", "#2f855a", "#9f3ab8", "#c53030", "#718096"];
let chosenFile = null;
let advancedOptions = [];

// One input per advanced option: a select for enums (empty: the service's default), a checkbox for a switch, a text
// input for a string, a number input with the option's bounds otherwise.
function addAdvancedFields(options, params) {
  advancedOptions = options.filter((o) => o.advanced);
  const box = $("advanced-fields");
  for (const o of advancedOptions) {
    const label = document.createElement("label");
    label.textContent = o.name.replaceAll("_", " ");
    label.title = o.help;
    let input;
    if (o.type === "enum") {
      input = document.createElement("select");
      fillSelect(input, o.default === null ? ["", ...o.choices] : o.choices, o.default);
      if (o.default === null) input.options[0].textContent = "(service default)";
    } else if (o.type === "boolean" || o.type === "string") {
      input = document.createElement("input");
      input.type = o.type === "boolean" ? "checkbox" : "text";
      if (o.type === "boolean") input.checked = o.default === true;
      else input.value = o.default === null ? "" : o.default;
    } else {
      input = document.createElement("input");
      input.type = "number";
      input.step = o.type === "integer" ? "1" : "any";
      if (o.ge !== undefined) input.min = o.ge;
      if (o.le !== undefined && o.le < 1e9) input.max = o.le;
      input.value = o.default;
    }
    input.id = `opt-${o.name}`;
    input.name = o.name;
    if (params.has(o.name)) {
      if (input.type === "checkbox") input.checked = ["1", "true", "on"].includes(params.get(o.name));
      else input.value = params.get(o.name);
      $("advanced").open = true;
    }
    label.appendChild(input);
    box.appendChild(label);
  }
}

function fillSelect(sel, values, value) {
  sel.innerHTML = "";
  for (const v of values) {
    const o = document.createElement("option");
    o.value = o.textContent = v;
    sel.appendChild(o);
  }
  if (value && values.includes(value)) sel.value = value;
}

function setFile(file, label) {
  chosenFile = file;
  $("file-name").textContent = file ? `${label || file.name} (${file.type || "?"}, ${file.size} B)` : "";
  const img = $("file-preview");
  if (file && file.type.startsWith("image/")) {
    img.src = URL.createObjectURL(file);
    img.hidden = false;
  } else {
    img.hidden = true;
  }
}

async function useSample() {
  const r = await fetch("/v1/samples/image.png");
  const blob = await r.blob();
  setFile(new File([blob], "sample.png", { type: "image/png" }), "sample photo");
}

function fmt(v, digits = 3) {
  return Number.isFinite(v) ? String(Number(Number(v).toPrecision(digits))) : String(v);
}

function row(tbody, k, v, cls) {
  const tr = document.createElement("tr");
  tr.innerHTML = `<td></td><td class="v"></td>`;
  tr.children[0].textContent = k;
  tr.children[1].textContent = v;
  if (cls) tr.children[1].className += " " + cls;
  tbody.appendChild(tr);
}

function showResult(d) {
  $("status").className = "muted";
  $("status").textContent = `request ${d.request_id}`;
  $("result").hidden = false;
  $("summary").textContent = `${d.task} via ${d.scheme} at ${fmt(d.snr_db)} dB over ${d.channel}: ` +
    `${d.channel_uses} channel uses`;
  // The answer / transcript / recovered text first; each non-text output says how it arrived.
  const lines = [];
  if (d.output) lines.push(d.output);
  for (const o of d.outputs) {
    if (o.text !== null && o.text === d.output) continue;
    const blocks = o.blocks ? `, ${o.block_errors}/${o.blocks} code blocks failed` : "";
    const what = o.text !== null ? `: ${o.text}` : "";
    lines.push(`${o.modality} ${o.decoded ? "decoded" : "NOT decoded"}${blocks}${what}` +
               (o.note && !o.decoded ? ` (${o.note})` : ""));
  }
  $("output-text").textContent = lines.join("\n") || "(nothing came back)";
  $("output-text").className = d.outputs.some((o) => !o.decoded) ? "bad" : "";
  const img = d.outputs.find((o) => o.image_png_b64);
  $("image-figure").hidden = !img;
  if (img) $("result-image").src = "data:image/png;base64," + img.image_png_b64;
  const sent = chosenFile && chosenFile.type.startsWith("image/");
  $("sent-figure").hidden = !sent;
  if (sent) $("sent-image").src = URL.createObjectURL(chosenFile);
  const wav = d.outputs.find((o) => o.audio_wav_b64);
  $("result-audio").hidden = !wav;
  if (wav) $("result-audio").src = "data:audio/wav;base64," + wav.audio_wav_b64;
  const q = $("quality").tBodies[0];
  q.innerHTML = "";
  for (const [k, v] of Object.entries(d.quality).sort()) {
    const good = (k === "exact_match" || k === "decoded") ? (v >= 1 ? "good" : "bad") : "";
    row(q, k, v === null ? "not finite" : fmt(v), good);
  }
  const t = $("timings").tBodies[0];
  t.innerHTML = "";
  for (const [k, v] of Object.entries(d.timings_s)) row(t, k, (v * 1e3).toFixed(1));
  $("result").dataset.requestId = d.request_id;
  document.body.dataset.state = "done";
}

function showError(status, message) {
  $("result").hidden = true;
  $("status").className = "error";
  $("status").textContent = `${status}: ${message}`;
  document.body.dataset.state = "error";
}

async function send(ev) {
  if (ev) ev.preventDefault();
  const form = new FormData();
  for (const id of ["task", "scheme", "text", "question", "channel", "fading", "seed", "answer"]) {
    const v = $(id).value;
    if (v !== "") form.append(id, v);
  }
  for (const o of advancedOptions) {
    const input = $(`opt-${o.name}`);
    const v = input.type === "checkbox" ? (input.checked ? "true" : "") : input.value;
    if (v !== "") form.append(o.name, v);
  }
  form.append("snr_db", $("snr").value);
  if ($("task").value === "asr" && $("answer").value) form.append("transcript", $("answer").value);
  if (chosenFile) form.append(chosenFile.type.startsWith("audio/") ? "audio" : "image", chosenFile, chosenFile.name);
  $("send").disabled = true;
  document.body.dataset.state = "sending";
  $("status").className = "muted";
  $("status").textContent = "sending…";
  try {
    const r = await fetch("/v1/send/form", { method: "POST", body: form });
    const d = await r.json();
    if (!r.ok) {
      const e = d.error || { status: r.status, message: JSON.stringify(d.detail || d) };
      showError(e.status, e.message);
    } else {
      showResult(d);
    }
  } catch (e) {
    showError("NETWORK", String(e));
  } finally {
    $("send").disabled = false;
    setTimeout(refreshChart, 1500); // after Prometheus' next scrape
  }
}

// ---- chart ---------------------------------------------------------------------------------------------------

function svg(tag, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawChart(data) {
  const c = $("chart");
  c.innerHTML = "";
  const W = 1100, H = 260, L = 60, R = 170, T = 12, B = 36;
  const pts = data.series.flatMap((s) => s.points);
  const ratio = data.unit === "ratio";
  let xmin = -10, xmax = 40, ymin = 0, ymax = 1;
  if (pts.length) {
    xmin = Math.min(...pts.map((p) => p[0])) - 2.5;
    xmax = Math.max(...pts.map((p) => p[0])) + 7.5;
  }
  // dB axes end on a multiple of 20, so that the four grid steps fall on multiples of 5 dB.
  if (!ratio) ymax = pts.length ? Math.max(20, Math.ceil(Math.max(...pts.map((p) => p[1])) / 20) * 20) : 60;
  if (ratio && pts.length) ymax = Math.max(1, Math.max(...pts.map((p) => p[1])));
  const x = (v) => L + (v - xmin) / (xmax - xmin) * (W - L - R);
  const y = (v) => H - B - (v - ymin) / (ymax - ymin) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = ymin + (ymax - ymin) * i / 4;
    c.appendChild(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    c.appendChild(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, ratio ? fmt(v, 2) : v.toFixed(0)));
  }
  for (let v = Math.ceil(xmin / 5) * 5; v <= xmax; v += 5) {
    c.appendChild(svg("line", { class: "axis", x1: x(v), x2: x(v), y1: H - B, y2: H - B + 4 }));
    c.appendChild(svg("text", { x: x(v), y: H - B + 16, "text-anchor": "middle" }, v));
  }
  c.appendChild(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  c.appendChild(svg("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  c.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" },
                    "SNR bucket (dB, 5 dB wide: 5 holds 5 to 10 dB)"));
  c.appendChild(svg("text", { x: 14, y: (T + H - B) / 2, transform: `rotate(-90 14 ${(T + H - B) / 2})`,
                              "text-anchor": "middle" }, `${data.metric} (${data.unit})`));
  data.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const g = svg("g", { class: "series", "data-scheme": s.scheme });
    g.appendChild(svg("polyline", { fill: "none", stroke: color, "stroke-width": 2.5,
                                    points: s.points.map((p) => `${x(p[0])},${y(p[1])}`).join(" ") }));
    for (const p of s.points) {
      const dot = svg("circle", { cx: x(p[0]), cy: y(p[1]), r: 5, fill: color, class: "point",
                                  "data-snr": p[0], "data-value": p[1] });
      dot.appendChild(svg("title", {}, `${s.scheme}, ${p[0]} dB: ${fmt(p[1])} over ${p[2]} requests`));
      g.appendChild(dot);
    }
    c.appendChild(g);
    c.appendChild(svg("rect", { x: W - R + 16, y: T + 8 + i * 20, width: 14, height: 4, fill: color }));
    c.appendChild(svg("text", { x: W - R + 36, y: T + 14 + i * 20 }, s.scheme));
  });
  c.dataset.points = String(pts.length);
}

async function refreshChart() {
  const metric = $("chart-metric").value, channel = $("chart-channel").value;
  try {
    const r = await fetch(`/v1/quality?metric=${encodeURIComponent(metric)}&channel=${encodeURIComponent(channel)}`);
    const d = await r.json();
    if (!r.ok) {
      $("chart-status").textContent = d.error ? d.error.message : `HTTP ${r.status}`;
      $("chart-status").className = "error";
      drawChart({ metric, unit: metric.endsWith("_db") ? "dB" : "ratio", series: [] });
      return;
    }
    drawChart(d);
    const n = d.series.reduce((a, s) => a + s.points.reduce((b, p) => b + p[2], 0), 0);
    $("chart-status").className = "muted";
    $("chart-status").textContent = n ? `${n} scored requests, ${d.series.length} scheme(s); mean since the ` +
      "services started, refreshed every 3 s" : "no scored requests yet: send some";
  } catch (e) {
    $("chart-status").textContent = String(e);
    $("chart-status").className = "error";
  }
}

// ---- start ---------------------------------------------------------------------------------------------------

async function init() {
  const params = new URLSearchParams(location.search);
  const opts = await (await fetch("/v1/options")).json();
  fillSelect($("task"), opts.task, params.get("task"));
  fillSelect($("scheme"), opts.scheme, params.get("scheme"));
  fillSelect($("channel"), opts.channel, params.get("channel"));
  fillSelect($("fading"), opts.fading, params.get("fading"));
  addAdvancedFields(opts.options, params);
  for (const ch of opts.channel) {
    const o = document.createElement("option");
    o.value = o.textContent = ch;
    $("chart-channel").appendChild(o);
  }
  for (const id of ["text", "question", "seed", "answer"]) if (params.has(id)) $(id).value = params.get(id);
  if (params.has("snr_db")) $("snr").value = params.get("snr_db");
  if (params.has("metric")) $("chart-metric").value = params.get("metric");
  const showQuestion = () => { $("question-row").hidden = $("task").value !== "vqa"; };
  const showSnr = () => { $("snr-value").textContent = `${$("snr").value} dB`; };
  $("task").addEventListener("change", showQuestion);
  $("snr").addEventListener("input", showSnr);
  $("file").addEventListener("change", () => setFile($("file").files[0] || null));
  $("sample-image").addEventListener("click", useSample);
  $("send-form").addEventListener("submit", send);
  $("chart-metric").addEventListener("change", refreshChart);
  $("chart-channel").addEventListener("change", refreshChart);
  showQuestion();
  showSnr();
  if (params.get("sample") === "image") await useSample();
  document.body.dataset.state = "ready";
  await refreshChart();
  setInterval(refreshChart, 3000);
  if (params.get("run") === "1") send();
}

init().catch((e) => showError("PAGE", String(e)));
