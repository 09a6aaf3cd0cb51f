"""The hunt end to end on a small seeded tree: does the pipeline find the planted absorbed pairs?"""

import itertools
import json
from pathlib import Path

import pytest
import torch

from sae_hacking.config import ConfigError
from sae_hacking.toy.experiments.hunt.config import HuntConfig
from sae_hacking.toy.experiments.hunt.run import HuntResult, run, train_ablator
from sae_hacking.toy.experiments.hunt.scoring import METHODS, Score

# 5 parents x 3 children (20 orthonormal features): big enough for absorption, ~2 s a run.
SMALL_TREE = {"roots": [{"p": 0.16, "repeat": 5, "children": [{"p": 0.25, "repeat": 3}]}]}


def small_config(tmp_path: Path, **changes: object) -> HuntConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = tmp_path / "tree.json"
    spec.write_text(json.dumps(SMALL_TREE), encoding="utf-8")
    settings: dict[str, object] = {
        "output_dir": tmp_path / "out",
        "device": "cpu",
        "hierarchy": str(spec),
        "model_dim": 20,
        "ablator_k": 3,
        # This ablator's parent latents fire at 0.5-0.7 beside absorbing children (FiringThreshold).
        "firing_threshold": 0.7,
        "steps": 2000,
        "samples": 10_000,
        "eval_samples": 10_000,
        # Read through a top-k reader SAE, as on a language model.
        "reader": "sae",
        "reader_width": 64,
        "reader_k": 6,
        "sweep_thresholds": (0.2, 0.3, 0.45, 0.6),
        **changes,
    }
    return HuntConfig(**settings)  # pyright: ignore[reportArgumentType]


# One seed's ablator can land in a poor optimum (a latent for a frequent feature combination, a
# parent split over two latents) whatever the hunt does, so precision and recall are judged
# pooled over several seeds, each seed a fresh random stream of data, SAE and samples.
SEEDS = (0, 1, 2, 3, 4)


@pytest.fixture(scope="module")
def hunts(tmp_path_factory: pytest.TempPathFactory) -> list[HuntResult]:
    torch.set_num_threads(1)
    return [run(small_config(tmp_path_factory.mktemp(f"hunt{s}"), seed=s)) for s in SEEDS]


@pytest.fixture(scope="module")
def hunt(hunts: list[HuntResult]) -> HuntResult:
    return hunts[0]


def pooled(scores: list[Score]) -> Score:
    return Score(
        scores[0].threshold,
        sum(s.predicted for s in scores),
        sum(s.true_positives for s in scores),
        sum(s.actual for s in scores),
    )


def test_through_a_reader_sae_the_ranked_hunt_finds_planted_pairs_with_p_and_r_at_least_0_8(
    hunts: list[HuntResult],
) -> None:
    # Measured on seeds 0-4: pooled P 0.95, R 0.93 (63 of 68 pairs); per seed P/R 1.00/1.00 on
    # three seeds, 0.93/1.00 on seed 3 and 0.80/0.62 on seed 2 (its ablator has a combination
    # latent and split parents). The original scoring found 17 of the 68.
    for result in hunts:
        assert len(result.truth.pairs) >= 10  # every ablator really absorbs (at most 15 pairs)
    total = pooled([h.at_default["ranked"] for h in hunts])
    assert total.precision >= 0.85
    assert total.recall >= 0.85
    both = [
        h.at_default["ranked"].precision >= 0.9 and h.at_default["ranked"].recall >= 0.9
        for h in hunts
    ]
    assert sum(both) >= 3


def test_the_original_scoring_through_a_reader_sae_misses_most_pairs(
    hunts: list[HuntResult],
) -> None:
    # Sign patterns of reader-latent effects: the reader's top-k spreads a parent's and its
    # absorber's effects over different reader latents.
    original = pooled([h.at_default["original"] for h in hunts])
    ranked = pooled([h.at_default["ranked"] for h in hunts])
    assert original.recall < ranked.recall - 0.3


def test_ground_truth_pairs_each_hold_a_parent_latent(hunt: HuntResult) -> None:
    parents = {p.parent_latent for p in hunt.truth.absorbed}
    assert len(parents) <= 5
    for pair in hunt.truth.pairs:
        assert len(set(pair) & parents) >= 1


def test_hunt_writes_its_table_and_figure(hunt: HuntResult) -> None:
    names = {p.name for p in hunt.run_dir.iterdir()}
    assert {"config.json", "hunt.json", "precision_recall.png"} <= names
    written = json.loads((hunt.run_dir / "hunt.json").read_text(encoding="utf-8"))
    assert written["at_default"]["ranked"]["recall"] == hunt.at_default["ranked"].recall
    assert set(written["sweep"]) == {m.name for m in METHODS}
    assert len(written["sweep"]["ranked"]) == 4
    assert len(written["sweep"]["never"]) == 1  # co-occurrence alone has no threshold
    assert sorted(map(tuple, written["found"])) == sorted(hunt.found)
    assert (hunt.run_dir / "precision_recall.png").read_bytes()[:4] == b"\x89PNG"


def test_a_lower_score_bar_never_loses_a_found_pair(hunt: HuntResult) -> None:
    by_bar = {s.threshold: s for s in hunt.sweeps["ranked"]}
    bars = sorted(by_bar)
    for low, high in itertools.pairwise(bars):
        assert by_bar[low].true_positives >= by_bar[high].true_positives
        assert by_bar[low].predicted >= by_bar[high].predicted


@pytest.mark.slow
def test_raw_top_k_ablator_defeats_the_co_occurrence_filter(tmp_path: Path) -> None:
    # Without a firing threshold the parent latent still fires weakly where its child's latent
    # fires, so absorbed pairs co-occur and a bar of 0 finds none of them (measured: recall 0).
    result = run(small_config(tmp_path, firing_threshold=0.0))
    assert len(result.truth.pairs) >= 10
    assert result.at_default["effect+never"].recall <= 0.2


def test_random_downstream_and_every_effect_space_run_end_to_end(tmp_path: Path) -> None:
    quick = {"downstream": "random", "downstream_width": 24, "reader_width": 32, "reader_k": 4}
    quick |= {"steps": 300, "samples": 2000, "eval_samples": 2000}
    for space in ("latents", "preactivations", "reconstruction"):
        result = run(small_config(tmp_path / space, effect_space=space, **quick))
        written = json.loads((result.run_dir / "hunt.json").read_text(encoding="utf-8"))
        assert written["reader"]["fvu"] < 1.0  # the reader SAE was trained and reconstructs
        assert written["effect_space"] == space
        assert all(a != b and 0 <= a < 20 and 0 <= b < 20 for a, b in result.found)
        assert result.at_default["ranked"].actual == len(result.truth.pairs)


def test_a_shared_trained_ablator_gives_the_same_result_as_training_afresh(tmp_path: Path) -> None:
    config = small_config(tmp_path, steps=200, samples=2000, eval_samples=2000, seed=2)
    trained = train_ablator(config, torch.device("cpu"))
    shared, fresh = run(config, trained), run(config)
    # Records, not Scores: a method without a threshold holds nan, which equals nothing.
    assert {k: s.record() for k, s in shared.at_default.items()} == {
        k: s.record() for k, s in fresh.at_default.items()
    }
    assert shared.found == fresh.found


def test_same_seed_gives_bit_identical_results(tmp_path: Path) -> None:
    quick = {"steps": 200, "samples": 2000, "eval_samples": 2000, "seed": 3}
    first = run(small_config(tmp_path / "a", **quick))
    second = run(small_config(tmp_path / "b", **quick))
    assert (first.run_dir / "hunt.json").read_bytes() == (second.run_dir / "hunt.json").read_bytes()


def test_config_refuses_an_unknown_reader(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^reader:"):
        small_config(tmp_path, reader="probe")


def test_config_refuses_a_missing_hierarchy(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^hierarchy:"):
        small_config(tmp_path, hierarchy=str(tmp_path / "missing.json"))


@pytest.mark.slow
def test_where_decoder_cosines_mislead_the_ranked_hunt_keeps_its_f1(tmp_path: Path) -> None:
    # The misleading case (cases.py): absorbers' decoders sit at cosine ~0.3 from their parent's,
    # look-alike children at ~0.64, exclusive families never co-occur. Measured, seeds 0 and 1:
    # ranked F1 0.92 and 0.96; decoder cosine 0.00 at 0.45 and at most 0.62 at any bar swept;
    # co-occurrence alone 0.34 and 0.37.
    for seed in (0, 1):
        result = run(
            HuntConfig(
                hierarchy="misleading",
                downstream="parents",
                reader="sae",
                reader_width=64,
                reader_k=8,
                steps=1500,
                samples=20_000,
                seed=seed,
                device="cpu",
                output_dir=tmp_path / f"seed{seed}",
            )
        )
        assert len(result.truth.pairs) >= 40  # of 60 parent-child pairs: the ablator absorbs
        ranked = result.at_default["ranked"].f1
        assert ranked >= 0.85
        assert result.at_default["decoder"].f1 <= 0.1
        assert max(s.f1 for s in result.sweeps["decoder"]) <= ranked - 0.2
        assert result.at_default["never"].f1 <= 0.5


@pytest.mark.slow
def test_per_latent_otsu_thresholds_let_a_raw_top_k_ablator_be_hunted(tmp_path: Path) -> None:
    # Without any bar the hunt finds almost nothing on a raw top-k ablator (test above); Otsu
    # bars fitted per latent, seeds 0-4 pooled, measured P 0.75, R 0.95 for the ranked score.
    raw_with_otsu = {"firing_threshold": 0.0, "fit_thresholds": "otsu", "eval_samples": 20_000}
    results = [run(small_config(tmp_path / f"s{s}", **raw_with_otsu, seed=s)) for s in SEEDS]
    total = pooled([r.at_default["ranked"] for r in results])
    assert total.recall >= 0.85
    assert total.precision >= 0.65
