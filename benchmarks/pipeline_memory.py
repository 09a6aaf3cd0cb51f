"""Peak host memory of the three pipeline steps at scaled-down widths, and the model at 65k x 65k.

Each step runs in a fresh process on the tiny model (CPU), which reports its peak resident set
(``ru_maxrss``) and its resident set just before the step's work (imports and libraries), so the
difference is what the step itself held. Widths scale the ablator and reader SAEs together; the
pair search reads a store in which every ablator latent was ablated (its worst case).

    uv run benchmarks/pipeline_memory.py [--widths 1024,2048,4096]
"""

import argparse
import multiprocessing as mp
import resource
import tempfile
from pathlib import Path

GIB = 1 << 30


def _rss_now() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _corpus(tmp: Path) -> Path:
    from sae_hacking.llm.tokenizer import TINY_TEXT

    path = tmp / "corpus.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


def _ablator(width: int) -> str:
    return f"blocks.1.hook_resid_post/jumprelu/{width}"


def step_cooccurrence(width: int, tmp: Path, queue) -> None:
    from sae_hacking.cooccurrence.config import CooccurrenceConfig
    from sae_hacking.cooccurrence.run import run

    config = CooccurrenceConfig(
        model="tiny",
        sae_release="tiny",
        sae_id=_ablator(width),
        dataset_path=(_corpus(tmp),),
        max_tokens_in_prompt=32,
        batch_size=8,
        max_prompts=32,
        device="cpu",
        output_dir=tmp / "cooc",
    )
    before = _rss_now()
    run(config)
    queue.put((before, _peak()))


def step_ablation(width: int, tmp: Path, queue) -> None:
    from sae_hacking.ablation.config import SelectiveAblationConfig
    from sae_hacking.ablation.run import run

    config = SelectiveAblationConfig(
        model="tiny",
        ablator_sae_release="tiny",
        ablator_sae_id=_ablator(width),
        reader_sae_release="tiny",
        reader_sae_id=f"blocks.2.hook_resid_post/jumprelu/{width}",
        dataset_path=(_corpus(tmp),),
        max_prompts=32,
        batch_size=8,
        max_tokens_in_prompt=32,
        abridge_ablations_to=32,
        max_rows_in_memory=1024,
        device="cpu",
        output_dir=tmp / "ablate",
    )
    before = _rss_now()
    run(config)
    queue.put((before, _peak()))


def step_pairs(width: int, tmp: Path, queue) -> None:
    import torch

    from sae_hacking.io.effects import StoreInfo, compact, write_manifest, write_shard
    from sae_hacking.pair_search.config import PairSearchConfig
    from sae_hacking.pair_search.run import run

    gen = torch.Generator().manual_seed(0)
    ablator = {"release": "tiny", "id": _ablator(width), "hook": "blocks.1.hook_resid_post"}
    info = StoreInfo(
        {**ablator, "width": width, "neuronpedia_id": None},
        {"id": "reader", "width": width},
        "tiny",
    )
    raw = tmp / "raw"
    raw.mkdir()
    shards = []
    for start in range(0, width, 1024):
        latents = torch.arange(start, min(start + 1024, width))
        rows = torch.randn(latents.shape[0], width, generator=gen)
        rows *= torch.rand(latents.shape[0], width, generator=gen) < 0.05
        shards.append(write_shard(raw, f"s{start}", latents, rows, torch.ones_like(latents)))
    write_manifest(raw, info, shards, {})
    compact([raw], tmp / "effects", "--ablation-dir")
    (cooc_dir,) = (tmp / "cooc").iterdir()
    config = PairSearchConfig(
        ablation_dir=(tmp / "effects",),
        cooccurrence_dir=cooc_dir,
        cosine_sim_threshold=0.3,
        block_rows=1024,
        device="cpu",
        output_dir=tmp / "pairs",
    )
    before = _rss_now()
    run(config)
    queue.put((before, _peak()))


def measure(step, width: int, tmp: Path) -> tuple[int, int]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=step, args=(width, tmp, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def model_65k() -> list[str]:
    e, er, block = 65536, 65536, 4096
    triangle = e * (e - 1) // 2
    rows = [
        ("co-occurrence counts (int32 triangle; int64 past 2^31 tokens: x2)", triangle * 4),
        ("co-occurrence 'ever' bits", triangle // 8),
        (
            "ablation: effect rows before a flush, and their sorted copy (2 x 16384 x width x 4)",
            2 * 16384 * er * 4,
        ),
        ("ablation: compaction (one 4096-row output shard + one input slice)", 2 * block * er * 4),
        ("pair search: two blocks (4096 rows x reader width x (4 + 2))", 2 * block * er * 6),
        ("pair search: block products and masks (4096 x 4096 x ~10 bytes)", block * block * 10),
        ("original: dense effects + dense co-occurrence float32", 2 * e * e * 4),
    ]
    return [f"| {name} | {size / GIB:.2f} |" for name, size in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--widths", default="1024,2048,4096")
    args = parser.parse_args()
    print("peak host memory per step, tiny model on CPU, fresh process each (GiB)")
    print("| width | step | before work | peak | held by the step | step's own model |")
    print("|---:|---|---:|---:|---:|---:|")
    for width in (int(w) for w in args.widths.split(",")):
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            triangle = width * (width - 1) // 2
            models = {
                "co-occurrence": triangle * 4 * 2 + triangle // 8,  # counts + the copy saved
                "selective ablation": 1024 * width * 4 * 2 + 2 * 4096 * width * 4,
                "pair search": 2 * 1024 * width * 6 + width * width * 6 + 1024 * 1024 * 10,
            }
            for label, step in (
                ("co-occurrence", step_cooccurrence),
                ("selective ablation", step_ablation),
                ("pair search", step_pairs),
            ):
                before, peak = measure(step, width, tmp)
                print(
                    f"| {width} | {label} | {before / GIB:.2f} | {peak / GIB:.2f} | "
                    f"{(peak - before) / GIB:.3f} | {models[label] / GIB:.3f} |",
                    flush=True,
                )
    print()
    print("memory model at 65,536 x 65,536 (GiB; each step holds only its own rows)")
    print("| what | GiB |")
    print("|---|---:|")
    for line in model_65k():
        print(line)


if __name__ == "__main__":
    main()
