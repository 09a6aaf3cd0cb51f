"""Highlighted tokens as a self-contained HTML file and as rich text for the terminal.

The live page (page.py) builds the same markup in the browser from the same stylesheet and the same
colour scale, so a saved file and the page look alike.
"""

import math
from html import escape

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text

from sae_hacking.highlight.schemas import HighlightResult, LatentTrace

# The colour of a token at the latent's peak; weaker activations fade towards white.
PEAK_RGB = (234, 88, 12)
PALE_RGB = (255, 247, 237)

STYLESHEET = """
:root { color-scheme: light; --ink: #1c1917; --muted: #78716c; --line: #e7e5e4; --accent: #c2410c; }
* { box-sizing: border-box; }
body { margin: 0; background: #fafaf9; color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 980px; margin: 0 auto; padding: 28px 24px 64px; }
h1 { font-size: 22px; margin: 0 0 4px; letter-spacing: -0.01em; }
h1 small { color: var(--muted); font-weight: 400; font-size: 14px; margin-left: 8px; }
.meta { color: var(--muted); font-size: 13px; margin: 0 0 18px; }
.meta code { background: #f5f5f4; border: 1px solid var(--line); border-radius: 4px; padding: 0 4px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px;
  margin: 0 0 16px; box-shadow: 0 1px 2px rgba(0,0,0,.04); }
.trace h2 { font-size: 15px; margin: 0 0 10px; display: flex; gap: 12px; align-items: baseline; flex-wrap: wrap; }
.trace h2 .peak { color: var(--muted); font-weight: 400; font-size: 13px; }
.trace h2 a { font-weight: 400; font-size: 13px; color: var(--accent); text-decoration: none; }
.trace h2 a:hover { text-decoration: underline; }
.tokens { font: 15px/2.1 ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
  white-space: pre-wrap; word-break: break-word; margin: 0; }
.tok { position: relative; border-radius: 3px; padding: 2px 0; margin-right: 1px; cursor: default;
  box-shadow: inset 0 0 0 1px rgba(0,0,0,.05); }
.tok.special { color: var(--muted); font-size: 12px; }
.tok:hover { outline: 2px solid var(--ink); outline-offset: 0; z-index: 2; }
.static .tok:hover::after { content: attr(data-tip); position: absolute; left: 0; top: -30px; white-space: pre;
  background: var(--ink); color: #fff; font-size: 12px; line-height: 1; padding: 6px 8px; border-radius: 5px;
  pointer-events: none; z-index: 3; }
.summary { display: flex; justify-content: space-between; align-items: center; gap: 16px; flex-wrap: wrap; }
.summary .meta { margin: 0; }
.legend { display: flex; align-items: center; gap: 8px; color: var(--muted); font-size: 12px; }
.legend .bar { width: 140px; height: 10px; border-radius: 5px; border: 1px solid var(--line);
  background: linear-gradient(90deg, rgb(255,247,237), rgb(234,88,12)); }
.empty { color: var(--muted); font-style: italic; }
label { display: block; font-size: 12px; font-weight: 600; color: var(--muted); margin: 0 0 4px;
  text-transform: uppercase; letter-spacing: .04em; }
label .hint { text-transform: none; letter-spacing: 0; font-weight: 400; margin-left: 6px; }
.chips { display: flex; flex-wrap: wrap; gap: 8px; }
.chip { background: #fff7ed; color: var(--ink); border: 1px solid #fed7aa; font-weight: 500; padding: 4px 10px;
  border-radius: 999px; font-size: 13px; }
.chip small { color: var(--muted); margin-left: 6px; font-weight: 400; }
.top h2 { font-size: 15px; margin: 0 0 10px; }
.prompt { margin: 0; white-space: pre-wrap; word-break: break-word;
  font: 14px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
"""


def intensity(value: float, peak: float) -> float:
    """Where ``value`` sits between 0 and the latent's peak, clipped to [0, 1]."""
    if peak <= 0 or value <= 0:
        return 0.0
    return min(value / peak, 1.0)


def token_rgb(value: float, peak: float) -> tuple[int, int, int]:
    """The background colour of a token: white where silent, orange at the peak."""
    t = intensity(value, peak)
    if t == 0.0:
        return (255, 255, 255)
    # floor(x + 0.5), not round(): the page's Math.round rounds halves up, and both must agree.
    red, green, blue = (
        math.floor(p + (q - p) * t + 0.5) for p, q in zip(PALE_RGB, PEAK_RGB, strict=True)
    )
    return red, green, blue


def display_token(token: str) -> str:
    """A token as shown: newlines visible as a return arrow (and still breaking the line)."""
    return token.replace("\n", "\u21b5\n")


def format_activation(value: float) -> str:
    """Four significant digits, enough to compare tokens without noise."""
    return f"{value:.4g}"


def token_tip(token: str, position: int, value: float) -> str:
    """The hover text of one token."""
    return f"#{position} {token!r}  {format_activation(value)}"


def _trace_html(result: HighlightResult, trace: LatentTrace) -> str:
    spans = []
    for position, (token, value) in enumerate(zip(result.tokens, trace.activations, strict=True)):
        special = position < result.special_prefix
        red, green, blue = token_rgb(0.0 if special else value, trace.max_activation)
        spans.append(
            f'<span class="tok{" special" if special else ""}" style="background:rgb({red},{green},{blue})"'
            f' data-act="{format_activation(value)}" data-tip="{escape(token_tip(token, position, value))}"'
            f' title="{escape(token_tip(token, position, value))}">{escape(display_token(token))}</span>'
        )
    link = (
        f' <a href="{escape(trace.neuronpedia_url)}" rel="noreferrer noopener">Neuronpedia &#8599;</a>'
        if trace.neuronpedia_url
        else ""
    )
    return (
        f'<section class="card trace" data-latent="{trace.latent}"><h2>latent {trace.latent}'
        f'<span class="peak">peak {format_activation(trace.max_activation)}</span>{link}</h2>'
        f'<p class="tokens">{"".join(spans)}</p></section>'
    )


def result_html(result: HighlightResult, prompt: str) -> str:
    """A self-contained HTML document (no scripts, no external files) showing every trace."""
    title = f"{result.sae_release}/{result.sae_id}"
    traces = "".join(_trace_html(result, trace) for trace in result.traces) or (
        '<p class="card empty">No latent fires on this prompt.</p>'
    )
    top = ""
    if result.top_latents is not None:
        chips = "".join(
            f'<span class="chip">{t.latent}<small>{format_activation(t.max_activation)}</small></span>'
            for t in result.top_latents
        )
        top = f'<section class="card top"><h2>Top latents on this prompt</h2><div class="chips">{chips}</div></section>'
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        # The file runs nothing and loads nothing: even a bug in escaping could not execute script.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} - highlighted prompt</title><style>{STYLESHEET}</style></head>"
        f'<body class="static"><main><h1>Highlighted prompt<small>{escape(result.model)}</small></h1>'
        f'<section class="card"><label>Prompt</label><p class="prompt">{escape(prompt)}</p></section>'
        f'<div class="card summary"><p class="meta">SAE <code>{escape(result.sae_release)}</code> / '
        f"<code>{escape(result.sae_id)}</code> at <code>{escape(result.hook_name)}</code> &#183; "
        f"{result.sae_width} latents &#183; {len(result.tokens)} tokens</p>"
        '<div class="legend">0<span class="bar"></span>peak of each latent</div></div>'
        f"{top}{traces}</main></body></html>\n"
    )


def result_rich(result: HighlightResult) -> Group:
    """The traces as coloured terminal text, plus a table of peaks and Neuronpedia links."""
    parts: list[Text | Table] = [
        Text.assemble(
            ("SAE ", "dim"),
            f"{result.sae_release}/{result.sae_id}",
            (f"  at {result.hook_name}", "dim"),
        )
    ]
    for trace in result.traces:
        line = Text.assemble(
            (f"latent {trace.latent}", "bold"),
            (f"  peak {format_activation(trace.max_activation)}\n", "dim"),
        )
        for position, (token, value) in enumerate(
            zip(result.tokens, trace.activations, strict=True)
        ):
            special = position < result.special_prefix
            t = 0.0 if special else intensity(value, trace.max_activation)
            red, green, blue = token_rgb(value, trace.max_activation)
            style = (
                Style(dim=True)
                if special or t == 0.0
                else Style(color="black", bgcolor=f"rgb({red},{green},{blue})")
            )
            line.append(display_token(token), style=style)
        parts.append(line)
    table = Table("latent", "peak", "Neuronpedia", title=None, show_edge=False)
    for trace in result.traces:
        # Text cells: strings would be read as rich markup.
        table.add_row(
            Text(str(trace.latent)),
            Text(format_activation(trace.max_activation)),
            Text(trace.neuronpedia_url or "-"),
        )
    parts.append(table)
    return Group(*parts)
