// The chargen page: plain JavaScript over the JSON API, no build step and nothing fetched from elsewhere.
"use strict";
const $ = (id) => document.getElementById(id);
const show = (ch) => (ch === "\n" ? "↵" : ch === " " ? "␣" : ch);
// A server started with --token is opened as /?token=...: every API call carries it.
const token = new URLSearchParams(location.search).get("token");
const headers = token ? { "Content-Type": "application/json", "Authorization": `Bearer ${token}` } : { "Content-Type": "application/json" };
const post = (path, body) => fetch(path, { method: "POST", headers, body: JSON.stringify(body) });

async function postJSON(path, body) {
  const response = await post(path, body);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function status(message, isError) {
  $("status").textContent = message;
  $("status").className = isError ? "status error" : "status";
}

async function loadModels() {
  const response = await fetch("/api/models", { headers });
  const info = await response.json();
  if (!response.ok) throw new Error(info.error || response.statusText);
  for (const m of info.models.filter((m) => m.task === "lm")) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = `${m.name} (${m.cell}, ${m.layers}×${m.hidden})`;
    option.dataset.corpus = m.corpus ? "yes" : "";
    $("model").appendChild(option);
  }
  corpusControls();
  $("length").max = info.limits.max_length;
}

// max-copy and the copies report need the corpus the model was trained on: off for a model without one
function corpusControls() {
  const option = $("model").selectedOptions[0];
  const known = Boolean(option && option.dataset.corpus);
  for (const id of ["max_copy", "novelty"]) {
    const label = $(id).parentElement;
    label.dataset.title ??= label.title;
    $(id).disabled = !known;
    label.title = known ? label.dataset.title : `${label.dataset.title} (this model does not record its corpus)`;
  }
}

async function showTop5() {
  const prime = $("prime").value;
  $("top5").replaceChildren();
  if (!prime) return;
  try {
    const data = await postJSON("/api/inspect", { model: $("model").value, text: prime, top: 5 });
    for (const [ch, p] of data.top[data.top.length - 1]) {
      const li = document.createElement("li");
      li.textContent = `${show(ch)} ${(100 * p).toFixed(1)}%`;
      $("top5").appendChild(li);
    }
  } catch (e) { status(e.message, true); }
}

// The studio's inputs: each sent only when filled in, by its API name (the input's id), so an empty one is off.
const NUMBERS = ["top_p", "min_p", "typical", "repetition_penalty", "repetition_window", "no_repeat", "max_copy"];

function request() {
  const body = { model: $("model").value, prime: $("prime").value, length: Number($("length").value),
                 temperature: $("schedule").value.trim() || Number($("temperature").value) };
  const schedule = Number(body.temperature);  // a plain number typed as a schedule is sent as a number
  if (typeof body.temperature === "string" && body.temperature !== "" && !Number.isNaN(schedule)) body.temperature = schedule;
  if ($("topk").value) body.top_k = Number($("topk").value);
  for (const name of NUMBERS) if ($(name).value !== "" && !$(name).disabled) body[name] = Number($(name).value);
  if ($("pattern").value) body.pattern = $("pattern").value;
  const words = $("include").value.split(",").map((w) => w.trim()).filter((w) => w);
  if (words.length) body.include = words;
  if ($("novelty").checked && !$("novelty").disabled) body.novelty = true;
  if ($("seed").value) body.seed = Number($("seed").value);
  if ($("stop").value) body.stop = $("stop").value.replaceAll("\\n", "\n");
  return body;
}

// ``text`` from ``from`` to ``to`` (offsets in prime + generated text) into ``target``, the copied spans marked.
function marked(target, text, from, to, spans) {
  target.replaceChildren();
  let at = from;
  for (const [start, end] of spans) {
    const a = Math.max(start, from), b = Math.min(end, to);
    if (a >= b) continue;
    if (a > at) target.append(text.slice(at - from, a - from));
    const mark = document.createElement("mark");
    mark.className = "copy";
    mark.textContent = text.slice(a - from, b - from);
    mark.title = `copied from the corpus (a span of ${end - start} characters)`;
    target.append(mark);
    at = b;
  }
  if (at < to) target.append(text.slice(at - from));
}

function reportCopies(copies, primeSpan, generated) {
  const prime = primeSpan.textContent, text = generated.textContent;
  marked(primeSpan, prime, 0, prime.length, copies.long_copies);
  marked(generated, text, prime.length, prime.length + text.length, copies.long_copies);
  const share = (100 * copies.long_copy_share).toFixed(1);
  const where = copies.longest_copy ? ` (corpus line ${copies.corpus_line}: “${copies.span.slice(0, 60)}${copies.span.length > 60 ? "…" : ""}”)` : "";
  $("novelty-report").textContent = `longest copy ${copies.longest_copy} characters${where}; ` +
    `${share}% of the sample in copies of ${copies.min_span}+ characters (highlighted)`;
}

async function generate() {
  const body = request();
  const out = $("output");
  out.replaceChildren();
  $("novelty-report").textContent = "";
  const primeSpan = document.createElement("span");
  primeSpan.className = "prime";
  primeSpan.textContent = body.prime;
  const generated = document.createElement("span");
  generated.id = "generated";
  out.append(primeSpan, generated);
  $("generate").disabled = true;
  status("generating…");
  try {
    const response = await post("/api/generate", body);
    if (!response.ok) throw new Error((await response.json()).error);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", seed = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n")) >= 0) {
        const line = JSON.parse(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 1);
        if (line.start) seed = line.start.seed;
        if (line.text) generated.textContent += line.text;
        if (line.error) throw new Error(line.error);
        if (line.copies) reportCopies(line.copies, primeSpan, generated);
      }
    }
    status(`done: ${generated.textContent.length} characters, seed ${seed}`);
  } catch (e) {
    status(e.message, true);
  } finally {
    $("generate").disabled = false;
  }
}

async function colour() {
  const target = $("coloured");
  try {
    const data = await postJSON("/api/inspect", { model: $("model").value, text: $("passage").value, top: 5,
      unit: Number($("unit").value), layer: Number($("layer").value), what: $("what").value });
    target.replaceChildren();
    data.chars.forEach((ch, i) => {
      const span = document.createElement("span");
      span.textContent = ch;
      span.style.background = data.activation.colours[i];
      const guesses = data.top[i].map(([c, p]) => `${show(c)} ${p.toFixed(3)}`).join("\n");
      span.title = `${data.activation.what}[${data.activation.layer}][${data.activation.unit}] = ${data.activation.values[i].toFixed(3)}\nnext:\n${guesses}`;
      target.appendChild(span);
    });
  } catch (e) {
    target.textContent = e.message;
    target.className = "error";
  }
}

let pending = null;
$("prime").addEventListener("input", () => { clearTimeout(pending); pending = setTimeout(showTop5, 250); });
$("temperature").addEventListener("input", () => { $("temperature-value").textContent = Number($("temperature").value).toFixed(2); });
$("generate").addEventListener("click", generate);
$("colour").addEventListener("click", colour);
$("model").addEventListener("change", () => { corpusControls(); showTop5(); });
loadModels().then(() => { showTop5(); colour(); }).catch((e) => status(`cannot list models: ${e.message}`, true));
