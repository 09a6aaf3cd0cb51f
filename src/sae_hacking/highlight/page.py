"""The page at ``/``: a form, and the prompt's tokens coloured by activation. Inline CSS and JS only.

User text reaches the DOM only through ``textContent`` and ``setAttribute``, never as markup, and the
Content-Security-Policy runs no script but this one, so a prompt cannot inject code.
"""

import base64
import hashlib

from sae_hacking.highlight.render import PALE_RGB, PEAK_RGB, STYLESHEET

PAGE_STYLE = """
textarea, input { width: 100%; font: inherit; color: inherit; background: #fff; border: 1px solid #d6d3d1;
  border-radius: 7px; padding: 8px 10px; }
textarea { resize: vertical; min-height: 76px; font: 15px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas,
  "DejaVu Sans Mono", monospace; }
textarea:focus, input:focus { outline: 2px solid #fdba74; border-color: var(--accent); }
.row { display: flex; gap: 12px; margin-top: 12px; flex-wrap: wrap; }
.field { min-width: 90px; }
.field.grow { flex: 1 1 240px; }
.field.narrow { width: 90px; }
.field.end { display: flex; align-items: flex-end; }
button { font: inherit; font-weight: 600; color: #fff; background: var(--accent); border: 0; border-radius: 7px;
  padding: 9px 22px; cursor: pointer; }
button:hover { background: #9a3412; }
button:disabled { background: #a8a29e; cursor: progress; }
.hint { color: var(--muted); font-size: 12px; margin: 10px 0 0; }
.error { background: #fef2f2; border: 1px solid #fecaca; color: #991b1b; border-radius: 8px; padding: 10px 14px;
  margin: 0 0 16px; white-space: pre-wrap; }
.chip:hover { background: #ffedd5; }
.chip.active { background: var(--accent); border-color: var(--accent); color: #fff; }
.chip.active small { color: #ffedd5; }
.trace[hidden] { display: none; }
.hover { position: fixed; left: 50%; bottom: 16px; transform: translateX(-50%); background: var(--ink); color: #fff;
  font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; padding: 8px 14px; border-radius: 8px;
  box-shadow: 0 4px 14px rgba(0,0,0,.25); white-space: pre; }
"""

SCRIPT = (
    '"use strict";\n'
    f"const PALE = [{', '.join(map(str, PALE_RGB))}], PEAK = [{', '.join(map(str, PEAK_RGB))}];\n"
    + """
const $ = (id) => document.getElementById(id);
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
function intensity(v, peak) { return peak <= 0 || v <= 0 ? 0 : Math.min(v / peak, 1); }
function tokenRgb(v, peak) {
  const t = intensity(v, peak);
  return t === 0 ? [255, 255, 255] : PALE.map((p, i) => Math.floor(p + (PEAK[i] - p) * t + 0.5));
}
function fmt(v) { return Number(v.toPrecision(4)).toString(); }
function shown(token) { return token.replace(/\\n/g, "\\u21b5\\n"); }
function setState(state) { document.body.dataset.state = state; }
function showError(message) { const box = $("error"); box.textContent = message; box.hidden = false; setState("error"); }
function parseLatents(text) {
  const parts = text.split(/[\\s,]+/).filter((p) => p.length > 0);
  if (!parts.every((p) => /^\\d+$/.test(p))) return null;
  return parts.map(Number);
}
function showHover(trace, token, position, value, special) {
  const bar = $("hover");
  const share = special ? " (added by the tokenizer; not scaled)"
    : trace.max_activation > 0 ? ` (${Math.round(100 * intensity(value, trace.max_activation))}% of peak)` : "";
  bar.textContent = `latent ${trace.latent}  token #${position} ${JSON.stringify(token)}  activation ${fmt(value)}${share}`;
  bar.hidden = false;
}
function traceCard(result, trace) {
  const card = el("section", "card trace");
  card.dataset.latent = String(trace.latent);
  const title = el("h2", null, `latent ${trace.latent}`);
  title.append(el("span", "peak", `peak ${fmt(trace.max_activation)}`));
  if (trace.neuronpedia_url && trace.neuronpedia_url.startsWith("https://www.neuronpedia.org/")) {
    const link = el("a", null, "Neuronpedia \\u2197");
    link.href = trace.neuronpedia_url; link.target = "_blank"; link.rel = "noreferrer noopener";
    title.append(link);
  }
  const tokens = el("p", "tokens");
  result.tokens.forEach((token, position) => {
    const value = trace.activations[position];
    const special = position < result.special_prefix;
    const span = el("span", special ? "tok special" : "tok", shown(token));
    const [r, g, b] = tokenRgb(special ? 0 : value, trace.max_activation);
    span.style.backgroundColor = `rgb(${r}, ${g}, ${b})`;
    span.dataset.act = String(value);
    span.dataset.tip = `#${position} ${JSON.stringify(token)}  ${fmt(value)}`;
    span.addEventListener("mouseenter", () => showHover(trace, token, position, value, special));
    span.addEventListener("mouseleave", () => { $("hover").hidden = true; });
    tokens.append(span);
  });
  card.append(title, tokens);
  return card;
}
function focusLatent(latent) {
  // One click on a top latent shows only its trace; a second click shows them all again.
  const again = document.querySelector(`.chip.active[data-latent="${latent}"]`) !== null;
  for (const chip of document.querySelectorAll(".chip")) {
    chip.classList.toggle("active", !again && chip.dataset.latent === String(latent));
  }
  for (const card of document.querySelectorAll(".trace")) {
    card.hidden = !again && card.dataset.latent !== String(latent);
  }
}
function render(result) {
  const out = $("results");
  out.replaceChildren();
  const summary = el("div", "card summary");
  const meta = el("p", "meta");
  const code = (text) => el("code", null, text);
  meta.append("SAE ", code(result.sae_release), " / ", code(result.sae_id), " at ", code(result.hook_name),
    ` \u00b7 ${result.sae_width} latents \u00b7 ${result.tokens.length} tokens`);
  const legend = el("div", "legend", "0");
  legend.append(el("span", "bar"), "peak of each latent");
  summary.append(meta, legend);
  out.append(summary);
  if (result.top_latents) {
    const top = el("section", "card top");
    top.append(el("h2", null, "Top latents on this prompt"));
    const chips = el("div", "chips");
    for (const latent of result.top_latents) {
      const chip = el("button", "chip", String(latent.latent));
      chip.type = "button";
      chip.dataset.latent = String(latent.latent);
      chip.append(el("small", null, fmt(latent.max_activation)));
      chip.addEventListener("click", () => focusLatent(latent.latent));
      chips.append(chip);
    }
    if (!result.top_latents.length) chips.append(el("span", "empty", "No latent fires on this prompt."));
    top.append(chips);
    out.append(top);
  }
  for (const trace of result.traces) out.append(traceCard(result, trace));
}
async function submit(event) {
  if (event) event.preventDefault();
  const latents = parseLatents($("latents").value);
  if (latents === null) { showError("Latents are non-negative integers separated by commas."); return; }
  const body = {
    prompt: $("prompt").value, sae_release: $("sae-release").value.trim(), sae_id: $("sae-id").value.trim(),
    latents: latents, top_k: Number($("top-k").value) || 10,
  };
  const button = $("submit");
  button.disabled = true; button.textContent = "Working\\u2026"; setState("busy");
  try {
    const response = await fetch("/api/highlight", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const problems = data && data.problems && data.problems.length ? "\\n" + data.problems.join("\\n") : "";
      showError((data && data.error ? data.error : `HTTP ${response.status}`) + problems);
      return;
    }
    $("error").hidden = true;
    render(data);
    setState("done");
  } catch (error) {
    showError(`Cannot reach the server: ${error.message}`);
  } finally {
    button.disabled = false; button.textContent = "Highlight";
  }
}
async function loadInfo() {
  try {
    const info = await (await fetch("/api/info")).json();
    $("model").textContent = info.model;
    if (!$("sae-release").value) $("sae-release").value = info.default_sae_release;
    if (!$("sae-id").value) $("sae-id").value = info.default_sae_id;
    $("prompt").maxLength = info.max_prompt_chars;
    $("top-k").max = String(info.max_top_k);
    setState("ready");
  } catch (error) {
    showError(`Cannot reach the server: ${error.message}`);
  }
}
$("form").addEventListener("submit", submit);
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) submit(event);
});
loadInfo();
"""
)

BODY = """
<main>
<h1>Prompt highlighter<small id="model"></small></h1>
<p class="meta">Type a prompt, pick an SAE and latents, and see each token coloured by how strongly the latent fires.</p>
<form id="form" class="card" autocomplete="off">
  <label for="prompt">Prompt</label>
  <textarea id="prompt" rows="3" required autofocus placeholder="The snake slid under the stone wall"></textarea>
  <div class="row">
    <div class="field grow"><label for="sae-release">SAE release</label><input id="sae-release" required spellcheck="false"></div>
    <div class="field grow"><label for="sae-id">SAE id</label><input id="sae-id" required spellcheck="false"></div>
  </div>
  <div class="row">
    <div class="field grow"><label for="latents">Latents<span class="hint">comma-separated; empty shows the top latents</span></label>
      <input id="latents" inputmode="numeric" placeholder="e.g. 1234, 5678" spellcheck="false"></div>
    <div class="field narrow"><label for="top-k">Top k</label><input id="top-k" type="number" min="1" value="10"></div>
    <div class="field end"><button id="submit" type="submit">Highlight</button></div>
  </div>
  <p class="hint">Ctrl+Enter in the prompt highlights too.</p>
</form>
<div id="error" class="error" role="alert" hidden></div>
<div id="results" aria-live="polite"></div>
</main>
<div id="hover" class="hover" hidden></div>
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


STYLE_SOURCE = STYLESHEET + PAGE_STYLE

PAGE_HTML = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    f"<title>Prompt highlighter</title><style>{STYLE_SOURCE}</style></head><body>{BODY}"
    f"<script>{SCRIPT}</script></body></html>\n"
)

# Only this page's own style and script run; fetches go to this server alone.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_csp_hash(SCRIPT)}; style-src {_csp_hash(STYLE_SOURCE)}; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
