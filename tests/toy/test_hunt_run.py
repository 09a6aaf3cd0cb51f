"""The hunt end to end on a small seeded tree: does the pipeline find the planted absorbed pairs?"""

import json
from pathlib import Path

import pytest
import torch

from sae_hacking.errors import UserInputError
from sae_hacking.toy.hunt_run import HuntConfig, HuntResult, run

# 5 parents x 3 children (20 orthonormal features): big enough for absorption, 5 s to train.
SMALL_TREE = {"roots": [{"p": 0.16, "repeat": 5, "children": [{"p": 0.25, "repeat": 3}]}]}


def small_config(tmp_path: Path, **changes: object) -> HuntConfig:
    spec = tmp_path / "tree.json"
    spec.write_text(json.dumps(SMALL_TREE), encoding="utf-8")
    settings: dict[str, object] = {
        "output_dir": tmp_path / "out",
        "device": torch.device("cpu"),
        "hierarchy": str(spec),
        "model_dim": 20,
        "ablator_k": 3,
        "steps": 2000,
        "samples": 20_000,
        "sweep_cosines": (0.3, 0.45, 0.6),
        "sweep_cooccurrences": (0, 10),
        **changes,
    }
    return HuntConfig(**settings)  # pyright: ignore[reportArgumentType]


@pytest.fixture(scope="module")
def hunt(tmp_path_factory: pytest.TempPathFactory) -> HuntResult:
    torch.set_num_threads(1)
    return run(small_config(tmp_path_factory.mktemp("hunt")))


def test_hunt_finds_planted_absorbed_pairs_with_precision_and_recall_at_least_0_8(
    hunt: HuntResult,
) -> None:
    assert len(hunt.truth.pairs) >= 10  # the ablator really absorbs (up to 15 pairs possible)
    assert hunt.at_default.precision >= 0.8
    assert hunt.at_default.recall >= 0.8


def test_ground_truth_pairs_each_hold_a_parent_latent(hunt: HuntResult) -> None:
    parents = {p.parent_latent for p in hunt.truth.absorbed}
    assert len(parents) <= 5
    for pair in hunt.truth.pairs:
        assert len(set(pair) & parents) >= 1


def test_hunt_writes_its_table_and_figure(hunt: HuntResult) -> None:
    names = {p.name for p in hunt.run_dir.iterdir()}
    assert {"config.json", "hunt.json", "precision_recall.png"} <= names
    written = json.loads((hunt.run_dir / "hunt.json").read_text(encoding="utf-8"))
    assert written["at_default"]["recall"] == hunt.at_default.recall
    assert len(written["sweep"]["ablation"]) == 3 * 2
    assert len(written["sweep"]["decoder_cosine_baseline"]) == 3 * 2
    assert (hunt.run_dir / "precision_recall.png").read_bytes()[:4] == b"\x89PNG"


def test_looser_co_occurrence_bar_never_loses_a_found_pair(hunt: HuntResult) -> None:
    by_bar = {(s.cosine_threshold, s.cooccurrence_threshold): s for s in hunt.ablation_sweep}
    for cosine in (0.3, 0.45, 0.6):
        assert by_bar[(cosine, 10)].true_positives >= by_bar[(cosine, 0)].true_positives


@pytest.mark.slow
def test_raw_top_k_ablator_defeats_the_co_occurrence_filter(tmp_path: Path) -> None:
    # Without a firing threshold the parent latent still fires weakly where its child's latent
    # fires, so absorbed pairs co-occur and a bar of 0 finds none of them (measured: recall 0).
    result = run(small_config(tmp_path, firing_threshold=0.0))
    assert len(result.truth.pairs) >= 10
    assert result.at_default.recall <= 0.2


def test_config_refuses_an_unknown_reader(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="--reader"):
        small_config(tmp_path, reader="probe")


def test_config_refuses_a_missing_hierarchy(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="--hierarchy"):
        small_config(tmp_path, hierarchy=str(tmp_path / "missing.json"))
