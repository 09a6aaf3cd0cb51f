"""What keeping each latent's top contexts (gemma_cooccurrences.py --top-contexts) costs the count:
the script's counting loop with and without it on a tiny Gemma-2-shaped model, and the context step
alone against the pair scatter on random activations at a Gemma Scope width, side by side.

    uv run benchmarks/cooccurrence_contexts.py [--width 16384] [--k 5] [--device cpu|cuda]
"""

from collections.abc import Callable
from typing import Annotated

import torch
import typer
from cooccurrence import HOOK, best_times, random_active
from rich.console import Console
from rich.table import Table

from sae_hacking.cooccurrence.contexts import TopContexts, batch_top, merge_top
from sae_hacking.cooccurrence.run import encode_batch
from sae_hacking.core.cooccurrence import add_counts_
from sae_hacking.core.triangle import triangle_size
from sae_hacking.llm import iter_token_batches, tiny_model, tiny_sae
from sae_hacking.llm.tokenizer import TINY_TEXT

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


def loop_table(d_model: int, width: int, prompts: int, k: int, repeats: int) -> Table:
    """The script's per-batch work (forward, encode, contexts, pair scatter), one thread."""
    model = tiny_model(d_model=d_model)
    sae = tiny_sae(model, f"{HOOK}/jumprelu/{width}")
    assert model.tokenizer is not None
    lines = [line for line in TINY_TEXT.splitlines() if line.strip()]
    texts = [lines[i % len(lines)] + " " + lines[(i * 7 + 3) % len(lines)] for i in range(prompts)]
    batches = list(iter_token_batches(texts, model.tokenizer, 8, 64))
    tokens = sum(int(b.counted_BS.sum()) for b in batches)

    @torch.inference_mode()
    def count(keep: int) -> None:
        counts_P = torch.zeros(triangle_size(width), dtype=torch.int32)
        firing_E = torch.zeros(width, dtype=torch.int64)
        top = TopContexts.empty(width, max(keep, 1))
        for number, batch in enumerate(batches):
            active_TE, acts_TE = encode_batch(model, sae, HOOK, batch)
            if keep:
                prompt_B = number * 8 + torch.arange(batch.n_prompts)
                found = batch_top(
                    acts_TE,
                    active_TE,
                    batch.tokens_BS,
                    batch.attention_mask_BS,
                    batch.counted_BS,
                    prompt_B,
                    keep,
                    top.floor_E(),
                )
                top = merge_top(top, found)
            add_counts_(counts_P, firing_E, active_TE)

    works: dict[str, Callable[[], object]] = {
        "without": lambda: count(0),
        "with": lambda: count(k),
    }
    seconds = best_times(works, repeats, torch.device("cpu"))
    table = Table(
        title=f"counting loop, tiny Gemma-2-shaped model d_model {d_model}, E {width:,}, to {HOOK}, "
        f"{tokens:,} tokens in batches of 8, best of {repeats} (CPU seconds, one thread)"
    )
    for column in ("loop", "seconds", "tokens/s", "cost"):
        table.add_column(column, justify="right")
    for key, label in (("without", "--top-contexts 0"), ("with", f"--top-contexts {k}")):
        cost = seconds[key] / seconds["without"] - 1
        table.add_row(
            label,
            f"{seconds[key]:.3f}",
            f"{tokens / seconds[key]:,.0f}",
            "" if key == "without" else f"+{100 * cost:.1f}%",
        )
    return table


def step_table(
    width: int, prompts: int, seq: int, l0: float, k: int, device: torch.device, repeats: int
) -> Table:
    """One batch's context step against its pair scatter, the same random activations."""
    generator = torch.Generator().manual_seed(0)
    active_TE = random_active(prompts, seq, width, l0, generator).reshape(-1, width).to(device)
    acts_TE = torch.rand(active_TE.shape, generator=generator).to(device) + 0.1
    tokens_BS = torch.randint(0, 256_000, (prompts, seq), generator=generator).to(device)
    mask_BS = torch.ones(prompts, seq, dtype=torch.long, device=device)
    counted_BS = mask_BS.bool()
    prompt_B = torch.arange(prompts, device=device)
    running = TopContexts.empty(width, k, device)
    running = merge_top(
        running, batch_top(acts_TE, active_TE, tokens_BS, mask_BS, counted_BS, prompt_B, k)
    )

    def scatter() -> None:
        counts_P = torch.zeros(triangle_size(width), dtype=torch.int32, device=device)
        firing_E = torch.zeros(width, dtype=torch.int64, device=device)
        add_counts_(counts_P, firing_E, active_TE)

    def contexts() -> None:
        found = batch_top(
            acts_TE, active_TE, tokens_BS, mask_BS, counted_BS, prompt_B + 1, k, running.floor_E()
        )
        merge_top(running, found)

    seconds = best_times({"scatter": scatter, "contexts": contexts}, repeats, device)
    table = Table(
        title=f"one batch, E={width:,}, {prompts * seq:,} tokens, mean L0 "
        f"{active_TE.sum(-1).float().mean():.1f}, k={k}, {device}, best of {repeats} "
        f"({'wall' if device.type == 'cuda' else 'CPU'} seconds)"
    )
    for column in ("step", "seconds", "against the pair scatter"):
        table.add_column(column, justify="right")
    table.add_row("pair scatter and firing counts", f"{seconds['scatter']:.4f}", "1.00x")
    table.add_row(
        "top contexts (batch top-k + running merge)",
        f"{seconds['contexts']:.4f}",
        f"{seconds['contexts'] / seconds['scatter']:.2f}x",
    )
    return table


@app.command()
def main(
    width: Annotated[int, typer.Option(help="SAE width of the one-batch step")] = 16384,
    prompts: Annotated[int, typer.Option(help="prompts in the one-batch step")] = 8,
    seq: Annotated[int, typer.Option(help="tokens per prompt in the one-batch step")] = 128,
    l0: Annotated[float, typer.Option(help="mean active latents per token")] = 64.0,
    k: Annotated[int, typer.Option(help="contexts kept per latent")] = 5,
    device: Annotated[str, typer.Option(help="cpu or cuda (the one-batch step)")] = "cpu",
    loop_prompts: Annotated[int, typer.Option(help="prompts for the model loop")] = 256,
    repeats: Annotated[int, typer.Option(help="timed repeats; the best is shown")] = 5,
) -> None:
    """Print the two tables."""
    torch.set_num_threads(1)
    console = Console(width=200)
    console.print(loop_table(256, 4096, loop_prompts, k, repeats))
    console.print(step_table(width, prompts, seq, l0, k, torch.device(device), repeats))


if __name__ == "__main__":
    app()
