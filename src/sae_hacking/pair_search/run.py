"""The pair-search run: effect rows (and co-occurrence counts) in, pairs and their report out."""

from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from sae_hacking.config import ConfigError
from sae_hacking.core.pair_scores import expected_cooccurrence
from sae_hacking.core.pairs import find_pairs
from sae_hacking.devices import command_line, resolve_device
from sae_hacking.errors import UserInputError
from sae_hacking.hunt_score.run import AtN, ordered, score_at, truth_pairs
from sae_hacking.io.ablation_sources import firing_of, open_cooccurrence, pair_lookup
from sae_hacking.io.cooccurrence_results import CooccurrenceResults
from sae_hacking.io.effects import EffectStore, check_same_sources, compact, read_manifest
from sae_hacking.io.rundir import (
    default_output_dir,
    make_run_dir,
    removed_unless_used,
    write_config,
)
from sae_hacking.neuronpedia import explain, neuronpedia_url
from sae_hacking.pair_search.config import PairSearchConfig
from sae_hacking.pair_search.evidence import (
    decoder_cosines,
    decoder_rows,
    most_moved,
)
from sae_hacking.pair_search.ranking import rank_pairs
from sae_hacking.pair_search.report import (
    LatentInfo,
    PairRow,
    write_csv,
    write_histogram,
    write_html,
    write_json,
)

SCRIPT = "look_for_pairs"
# Ranked scoring reads exact counts (the confidence needs them) and bars no count.
ANY_COUNT = 2**62
console = Console(stderr=True)


def _effects_dir(run: Path) -> Path:
    return run / "effects" if (run / "effects").is_dir() else run


def _no_cooccurrence(first_P: torch.Tensor, second_P: torch.Tensor) -> torch.Tensor:
    del second_P
    return torch.zeros_like(first_P)


def _open_inputs(
    config: PairSearchConfig,
) -> tuple[list[Path], list[dict[str, Any]], CooccurrenceResults | None]:
    """Read and cross-check every input before a run directory is made (--truth next, in ``run``)."""
    sources = [_effects_dir(d) for d in config.ablation_dir]
    manifests = [read_manifest(s, "--ablation-dir") for s in sources]
    check_same_sources(manifests, "--ablation-dir")
    ablator = manifests[0]["ablator"]
    width = int(ablator["width"])
    for latent in config.just_these:
        if not 0 <= latent < width:
            raise ConfigError(
                "just_these", f"{latent} is out of range; the ablator SAE has {width} latents"
            )
    if config.cooccurrence_dir is None:
        return sources, manifests, None
    results = open_cooccurrence(
        config.cooccurrence_dir,
        model=manifests[0]["model"],
        release=ablator["release"],
        sae_id=ablator["id"],
        width=width,
        hook_name=ablator.get("hook"),
        ablator=ablator,
    )
    return sources, manifests, results


def run(config: PairSearchConfig) -> Path:
    """Search pairs and write pairs.json, pairs.csv, cosines.png and pairs.html to a new run directory."""
    device = resolve_device(config.device)
    sources, manifests, cooccurrence = _open_inputs(config)
    truth = None
    if config.truth is not None:
        # A first-letter run of several SAEs is read for this hunt's ablator.
        truth = truth_pairs(config.truth, None, manifests[0]["ablator"].get("id"))
        if not truth:
            raise UserInputError("--truth", f"'{config.truth}' holds no absorbing pair")
    # Every shard is checked before the run directory is made (or, for runs summed into it,
    # before anything beside its config is written), so a damaged store leaves no run behind.
    single = len(sources) == 1 and manifests[0].get("compacted")
    store = EffectStore(sources[0], "--ablation-dir") if single else None
    ranked = config.scoring == "ranked"
    count_bar = ANY_COUNT if ranked else config.cooccurrence_threshold
    lookup = _no_cooccurrence
    if cooccurrence is not None:
        lookup = pair_lookup(cooccurrence, count_bar)
    run_dir = make_run_dir(config.output_dir or default_output_dir(), SCRIPT)
    write_config(run_dir, config, command_line())
    if store is None:
        with removed_unless_used(run_dir):
            compact(sources, run_dir / "effects", "--ablation-dir")
        store = EffectStore(run_dir / "effects", "--ablation-dir")
    if cooccurrence is None:  # said once every input is read
        console.print(
            "no --cooccurrence-dir: pairs are not filtered by co-occurrence", highlight=False
        )
    ablator = store.manifest["ablator"]
    just_these = None
    if config.just_these:
        just_these = torch.tensor(sorted(set(config.just_these)), dtype=torch.long)
        missing = sorted(set(config.just_these) - set(store.latents_R.tolist()))
        if missing:
            console.print(f"--just-these: never ablated, so no pairs: {missing}", highlight=False)
    search = find_pairs(
        store.latents_R,
        store.rows,
        lookup,
        config.score_threshold if ranked else config.cosine_sim_threshold,
        count_bar,
        config.top_n,
        sign=config.sign,
        just_these=just_these,
        block_rows=config.block_rows,
        device=device,
    )
    pairs = search.pairs
    scores: list[float | None] = [None] * len(pairs)
    dropped_alike: int | None = None  # None: no ranking, or distinct tokens unknown
    if ranked:
        assert cooccurrence is not None
        with removed_unless_used(run_dir):  # an unreadable decoder leaves no run behind
            decoder_P = _ranking_decoder_cosines(store.manifest, pairs.first_P, pairs.second_P)
        ranking = rank_pairs(
            pairs,
            cooccurrence.firing_E,
            cooccurrence.tokens,
            config.score_threshold,
            decoder_P,
            config.min_decoder_cosine,
            cooccurrence.distinct_tokens(),
            config.generality_ratio,
        )
        pairs, scores = ranking.pairs, ranking.score_P.tolist()
        dropped_alike = ranking.dropped_alike
    ids = sorted(set(pairs.first_P.tolist()) | set(pairs.second_P.tolist()))
    neuronpedia_id = ablator.get("neuronpedia_id")
    texts = (
        explain(neuronpedia_id, ids, run_dir / "explanations.json") if config.explanations else {}
    )
    row_of = {int(latent): row for row, latent in enumerate(store.latents_R.tolist())}
    firing = firing_of(cooccurrence, ids)
    contexts = {} if cooccurrence is None else cooccurrence.top_contexts(ids)
    moved = most_moved(store, ids)
    reader_id = store.manifest["reader"].get("neuronpedia_id")
    if config.explanations and reader_id:
        read = sorted({m["latent"] for moves in moved.values() for m in moves if m["url"]})
        reader_texts = explain(reader_id, read, run_dir / "explanations.json")
        for moves in moved.values():
            for move in moves:
                move["explanation"] = reader_texts.get(move["latent"])
    tokens = None if cooccurrence is None else cooccurrence.tokens

    def info(latent: int) -> LatentInfo:
        count = firing[latent]
        return LatentInfo(
            latent=latent,
            ablations=int(store.counts_R[row_of[latent]]),
            firing=count,
            url=neuronpedia_url(neuronpedia_id, latent),
            explanation=texts.get(latent),
            firing_rate=None if count is None or not tokens else count / tokens,
            contexts=contexts.get(latent, []),
            moves=moved[latent],
        )

    first, second = pairs.first_P.tolist(), pairs.second_P.tolist()
    decoder = _decoder_cosines(config, store.manifest, pairs.first_P, pairs.second_P)
    expected: list[float | None] = [None] * len(first)
    if cooccurrence is not None and len(first):
        expected = expected_cooccurrence(
            cooccurrence.firing_E[pairs.first_P.cpu()],
            cooccurrence.firing_E[pairs.second_P.cpu()],
            cooccurrence.tokens,
        ).tolist()
    rows = [
        PairRow(
            info(int(i)),
            info(int(j)),
            float(c),
            int(n) if config.cooccurrence_dir else None,
            score,
            expected_cooccurrence=e,
            decoder_cosine=d,
            true_pair=None if truth is None else ordered(i, j) in truth,
        )
        for i, j, c, n, score, e, d in zip(
            first,
            second,
            pairs.cosine_P.tolist(),
            pairs.cooccurrence_P.tolist(),
            scores,
            expected,
            decoder,
            strict=True,
        )
    ]
    kind = "sign-pattern cosine" if config.sign else "cosine"
    if ranked:
        general = (
            ""
            if dropped_alike is None
            else f", one member on >= {config.generality_ratio:g}x the other's distinct tokens"
        )
        head = (
            f"{len(rows)} pairs scoring >= {config.score_threshold:g} ({kind} x exclusion "
            f"confidence, decoder cosine >= {config.min_decoder_cosine:g}{general}, "
            "siblings dropped), "
            f"scored from the best {len(search.pairs)} of the "
            f"{search.passed} pairs with {kind} >= {config.score_threshold:g}"
        )
    else:
        head = f"{search.passed} pairs with {kind} >= {config.cosine_sim_threshold:g}" + (
            f" and co-occurrence <= {config.cooccurrence_threshold}"
            if config.cooccurrence_dir
            else ""
        )
    cut = not ranked and len(rows) < search.passed
    summary = (
        head
        + f", from {store.latents_R.shape[0]} ablated latents ({search.compared} pairs compared)"
        + (
            f"; the best {len(rows)} shown (--top-n {config.top_n})."
            if cut
            else f"; all {len(rows)} shown."
        )
    )
    scored = None
    if truth is not None:
        reported = [ordered(i, j) for i, j in zip(first, second, strict=True)]
        scored = score_at(reported, truth, len(reported))
    truth_line = None if scored is None else _truth_line(scored, config.truth)
    meta = {
        "summary": summary,
        "truth": None if scored is None else {"file": str(config.truth), **scored.record()},
        "ablator": ablator,
        "reader": store.manifest["reader"],
        "similarity": kind,
        "compared": search.compared,
        "passed": search.passed,
        "shown": len(rows),
        "histogram": search.histogram_D.tolist(),
        "cooccurrence_dir": None if cooccurrence is None else str(cooccurrence.directory),
        "cooccurrence_tokens": None if cooccurrence is None else cooccurrence.tokens,
        "generality_ratio": None if dropped_alike is None else config.generality_ratio,
        "dropped_alike": dropped_alike,
    }
    write_json(run_dir / "pairs.json", rows, meta)
    write_csv(run_dir / "pairs.csv", rows)
    write_histogram(
        run_dir / "cosines.png",
        search.histogram_D.tolist(),
        config.cosine_sim_threshold,
        f"{kind} of all compared pairs",
    )
    write_html(
        run_dir / "pairs.html", rows, "Pairs of latents with similar effects", summary, truth_line
    )
    console.print(summary, highlight=False)
    if truth_line is not None:
        console.print(truth_line, highlight=False)
    return run_dir


def _truth_line(scored: AtN, path: Path | None) -> str:
    return (
        f"against {path}: {scored.hits} of the {scored.shown} reported pairs are true (precision "
        f"{scored.precision:.2f}), {scored.hits} of the {scored.truth} true pairs reported "
        f"(recall {scored.recall:.2f})"
    )


def _ranking_decoder_cosines(
    manifest: dict[str, Any], first_P: torch.Tensor, second_P: torch.Tensor
) -> torch.Tensor:
    """Each pair's decoder cosine, which the ranked score needs (a decoder that cannot be read
    is a one-line error)."""
    if first_P.shape[0] == 0:
        return torch.zeros(0)
    latents_D, index_2P = torch.unique(torch.stack([first_P, second_P]).cpu(), return_inverse=True)
    decoder_DM = decoder_rows(manifest["ablator"], manifest["model"], latents_D.tolist())
    return decoder_cosines(decoder_DM, index_2P[0], index_2P[1])


def _decoder_cosines(
    config: PairSearchConfig,
    manifest: dict[str, Any],
    first_P: torch.Tensor,
    second_P: torch.Tensor,
) -> list[float | None]:
    """Each pair's decoder cosine, or None for all when the ablator SAE cannot be loaded (which
    never fails the search)."""
    if not config.decoder_cosine or first_P.shape[0] == 0:
        return [None] * first_P.shape[0]
    latents_D, index_2P = torch.unique(torch.stack([first_P, second_P]).cpu(), return_inverse=True)
    try:
        decoder_DM = decoder_rows(manifest["ablator"], manifest["model"], latents_D.tolist())
    except UserInputError as error:
        console.print(f"no decoder cosines: {error}", highlight=False)
        return [None] * first_P.shape[0]
    return decoder_cosines(decoder_DM, index_2P[0], index_2P[1]).tolist()
