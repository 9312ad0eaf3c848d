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
    $("model").appendChild(option);
  }
  $("length").max = info.limits.max_length;
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

async function generate() {
  const body = { model: $("model").value, prime: $("prime").value, length: Number($("length").value),
                 temperature: Number($("temperature").value) };
  if ($("topk").value) body.top_k = Number($("topk").value);
  if ($("seed").value) body.seed = Number($("seed").value);
  if ($("stop").value) body.stop = $("stop").value.replaceAll("\\n", "\n");
  const out = $("output");
  out.replaceChildren();
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
$("model").addEventListener("change", showTop5);
loadModels().then(() => { showTop5(); colour(); }).catch((e) => status(`cannot list models: ${e.message}`, true));
