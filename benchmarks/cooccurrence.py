"""Co-occurrence counting: the original's per-prompt sparse matmul into a dense float32 matrix
against this toolkit's per-token pair scatter into a packed integer triangle, same activations,
one thread; then the whole counting loop against a forward pass alone on the tiny model.

    uv run benchmarks/cooccurrence.py [--width 16384] [--prompts 32] [--seq 128] [--l0 64] [--device cpu]

Memory model (E latents): the original keeps E*E float32 = 4 E^2 bytes; the packed triangle keeps
E(E-1)/2 counts = 2 E^2 bytes as int32 (4 E^2 as int64), plus 8 E bytes of firing counts and
E^2/16 bytes for the bit-packed "ever co-occurred" file. At E = 65,536: 17.2 GB, 8.6 GB, 268 MB.
"""

import time
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.table import Table

from sae_hacking.core.cooccurrence import add_counts_
from sae_hacking.core.triangle import triangle_size
from sae_hacking.llm import TINY_ABLATOR_ID, iter_token_batches, tiny_model, tiny_sae
from sae_hacking.llm.cooccurrence_run import active_of_batch
from sae_hacking.llm.models import stop_layer
from sae_hacking.llm.tokenizer import TINY_TEXT

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


def random_active(
    prompts: int, seq: int, width: int, l0: float, generator: torch.Generator
) -> torch.Tensor:
    """Active latents per token with a realistic spread of latent frequencies (log-uniform rates)."""
    rates_E = 10.0 ** (-3.0 * torch.rand(width, generator=generator))
    rates_E = (rates_E * (l0 / rates_E.sum())).clamp(max=0.5)
    return torch.rand(prompts, seq, width, generator=generator) < rates_E


def original_counting(active_BSE: torch.Tensor) -> torch.Tensor:
    """The original's step: per prompt, sparse(acts).T @ sparse(acts) added into a dense float32 matrix."""
    width = active_BSE.shape[2]
    dense_EE = torch.zeros(width, width, dtype=torch.float32, device=active_BSE.device)
    for active_SE in active_BSE:
        sparse_SE = active_SE.float().to_sparse()
        dense_EE += torch.sparse.mm(sparse_SE.T, sparse_SE)
    return dense_EE


def toolkit_counting(active_BSE: torch.Tensor) -> torch.Tensor:
    width = active_BSE.shape[2]
    counts_P = torch.zeros(triangle_size(width), dtype=torch.int32, device=active_BSE.device)
    firing_E = torch.zeros(width, dtype=torch.int64, device=active_BSE.device)
    add_counts_(counts_P, firing_E, active_BSE.reshape(-1, width))
    return counts_P


def timed(work, device: torch.device, repeats: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def counting_table(width: int, prompts: int, seq: int, l0: float, device: torch.device) -> Table:
    generator = torch.Generator().manual_seed(0)
    active_BSE = random_active(prompts, seq, width, l0, generator).to(device)
    tokens = prompts * seq
    original_s, dense_EE = timed(lambda: original_counting(active_BSE), device)
    toolkit_s, counts_P = timed(lambda: toolkit_counting(active_BSE), device)
    assert isinstance(dense_EE, torch.Tensor) and isinstance(counts_P, torch.Tensor)
    i, j = torch.triu_indices(width, width, 1, device=device)
    assert torch.equal(dense_EE[i, j].long(), counts_P.long()), "outputs differ"
    table = Table(
        title=f"counting step, E={width:,}, {tokens:,} tokens, mean L0 {active_BSE.sum(-1).float().mean():.1f}, {device}"
    )
    for column in ("method", "seconds", "tokens/s", "speed-up", "count memory"):
        table.add_column(column, justify="right")
    table.add_row(
        "original: sparse matmul into dense float32",
        f"{original_s:.3f}",
        f"{tokens / original_s:,.0f}",
        "1.0x",
        f"{4 * width * width / 1e9:.2f} GB",
    )
    table.add_row(
        "toolkit: pair scatter into packed int32",
        f"{toolkit_s:.3f}",
        f"{tokens / toolkit_s:,.0f}",
        f"{original_s / toolkit_s:.1f}x",
        f"{4 * triangle_size(width) / 1e9:.2f} GB",
    )
    return table


def script_table(prompts: int, batch_size: int, max_tokens: int) -> Table:
    model = tiny_model()
    sae = tiny_sae(model, TINY_ABLATOR_ID)
    hook = TINY_ABLATOR_ID.split("/")[0]
    assert model.tokenizer is not None
    lines = [line for line in TINY_TEXT.splitlines() if line.strip()]
    texts = [lines[i % len(lines)] + " " + lines[(i * 7 + 3) % len(lines)] for i in range(prompts)]
    batches = list(iter_token_batches(texts, model.tokenizer, batch_size, max_tokens))
    tokens = sum(int(b.counted_BS.sum()) for b in batches)
    width = sae.cfg.d_sae

    @torch.inference_mode()
    def forward_only() -> None:
        for batch in batches:
            model(
                batch.tokens_BS,
                attention_mask=batch.attention_mask_BS,
                stop_at_layer=stop_layer(hook),
            )

    def whole_count() -> None:
        counts_P = torch.zeros(triangle_size(width), dtype=torch.int32)
        firing_E = torch.zeros(width, dtype=torch.int64)
        for batch in batches:
            add_counts_(counts_P, firing_E, active_of_batch(model, sae, hook, batch))

    forward_s, _ = timed(forward_only, torch.device("cpu"))
    count_s, _ = timed(whole_count, torch.device("cpu"))
    table = Table(
        title=f"tiny model, {tokens:,} counted tokens, batch {batch_size}, <= {max_tokens} tokens/prompt, SAE width {width}"
    )
    for column in ("work", "seconds", "tokens/s", "cost over forward"):
        table.add_column(column, justify="right")
    table.add_row(f"forward pass to {hook}", f"{forward_s:.3f}", f"{tokens / forward_s:,.0f}", "")
    table.add_row(
        "forward + SAE encode + pair scatter",
        f"{count_s:.3f}",
        f"{tokens / count_s:,.0f}",
        f"+{100 * (count_s / forward_s - 1):.0f}%",
    )
    return table


@app.command()
def main(
    width: Annotated[int, typer.Option(help="SAE width for the counting step")] = 16384,
    prompts: Annotated[int, typer.Option(help="prompts in the counting step")] = 32,
    seq: Annotated[int, typer.Option(help="tokens per prompt in the counting step")] = 128,
    l0: Annotated[float, typer.Option(help="mean active latents per token")] = 64.0,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    threads: Annotated[int, typer.Option(help="torch CPU threads")] = 1,
    script_prompts: Annotated[int, typer.Option(help="prompts for the tiny-model loop")] = 256,
    save_table: Annotated[
        Path | None, typer.Option(help="also write the tables here as text")
    ] = None,
) -> None:
    """Print the benchmark tables."""
    torch.set_num_threads(threads)
    console = Console(record=save_table is not None)
    console.print(counting_table(width, prompts, seq, l0, torch.device(device)))
    console.print(script_table(script_prompts, batch_size=8, max_tokens=64))
    if save_table is not None:
        save_table.write_text(console.export_text())


if __name__ == "__main__":
    app()
