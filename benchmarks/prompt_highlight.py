"""Prompt highlighting latency: this server's cached SAE and partial forward against the original's way.

The original loaded the SAE again for every request and ran the whole model. Here the SAE stays in an
LRU cache and the model runs only up to the SAE's hook. Tiny model, one torch thread, requests through
the ASGI app in-process (no sockets). Checks that both ways give the same activations.

    uv run benchmarks/prompt_highlight.py [--requests 20] [--device cpu]
"""

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from fastapi.testclient import TestClient
from sae_lens import SAE, HookedSAETransformer

from sae_hacking.highlight.app import create_app
from sae_hacking.highlight.highlighter import ModelHighlighter
from sae_hacking.highlight.server import registry_sae
from sae_hacking.llm import TINY_ABLATOR_ID, TINY_RELEASE, tiny_model
from sae_hacking.llm.tokenizer import TINY_TEXT


def median_ms(work: Callable[[], Any], repeats: int) -> float:
    for _ in range(3):
        work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def original_way(
    model: HookedSAETransformer, load: Callable[[str, str], SAE[Any]], prompt: str
) -> torch.Tensor:
    """Load the SAE afresh and run the whole model, as the original server did per request."""
    sae = load(TINY_RELEASE, TINY_ABLATOR_ID)
    with torch.no_grad():
        _, cache = model.run_with_cache_with_saes(model.to_tokens(prompt), saes=[sae])
    return cache[f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"][0, :, [1, 2, 3]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    model = tiny_model(device=device)

    def load(release: str, sae_id: str) -> SAE[Any]:
        return registry_sae(model, release, sae_id, device, "float32")

    def highlighter(cache_size: int) -> ModelHighlighter:
        return ModelHighlighter(
            model, "tiny", load, (TINY_RELEASE, TINY_ABLATOR_ID), cache_size, 256
        )

    cached = TestClient(create_app(highlighter(2)), base_url="http://127.0.0.1")
    prompt_words = " ".join(TINY_TEXT.split()[:150])
    print(
        f"tiny model (6 layers, d_model 64), SAE {TINY_ABLATOR_ID} at layer 3 of 6, {args.device}"
    )
    print(
        "| prompt tokens | cached SAE, stop at hook (ms) | SAE loaded per request, full forward (ms) | speed-up | max abs diff |"
    )
    print("|---|---|---|---|---|")
    for words in (8, 40, 150):
        prompt = " ".join(prompt_words.split()[:words])
        body = {
            "prompt": prompt,
            "sae_release": TINY_RELEASE,
            "sae_id": TINY_ABLATOR_ID,
            "latents": [1, 2, 3],
        }
        fast = median_ms(partial(cached.post, "/api/highlight", json=body), args.requests)
        slow = median_ms(partial(original_way, model, load, prompt), max(3, args.requests // 4))
        served = torch.tensor(
            [t["activations"] for t in cached.post("/api/highlight", json=body).json()["traces"]]
        )
        diff = (served.T - original_way(model, load, prompt).cpu()).abs().max().item()
        tokens = model.to_tokens(prompt).shape[1]
        print(f"| {tokens} | {fast:.1f} | {slow:.1f} | {slow / fast:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
