from pathlib import Path

import pytest
import torch

from sae_hacking.errors import UserInputError
from sae_hacking.io.effects import (
    EffectStore,
    RowAccumulator,
    StoreInfo,
    compact,
    write_manifest,
    write_shard,
)

INFO = StoreInfo({"id": "a", "width": 50}, {"id": "r", "width": 6}, "tiny")


def random_ablations(seed: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randint(0, 50, (5,), generator=gen), torch.randn(5, 6, generator=gen))
        for _ in range(n)
    ]


def dict_sum(ablations) -> tuple[dict[int, torch.Tensor], dict[int, int]]:
    rows: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = {}
    for latents, effects in ablations:
        for latent, effect in zip(latents.tolist(), effects, strict=True):
            rows[latent] = rows.get(latent, torch.zeros(6)) + effect
            counts[latent] = counts.get(latent, 0) + 1
    return rows, counts


def store_from(directory: Path, ablations, flush_every: int) -> None:
    acc = RowAccumulator(50, 6, torch.device("cpu"))
    shards = []
    for step, (latents, effects) in enumerate(ablations, start=1):
        acc.add(latents, effects)
        if step % flush_every == 0 or step == len(ablations):
            shards.append(write_shard(directory, f"shard-{step:03d}", *acc.take()))
    write_manifest(directory, INFO, shards, {})


def test_compacted_stores_equal_the_sum_over_all_ablations(tmp_path: Path) -> None:
    first, second = random_ablations(0, 9), random_ablations(1, 4)
    store_from(tmp_path / "run0", first, flush_every=2)
    store_from(tmp_path / "run1", second, flush_every=3)
    compact(
        [tmp_path / "run0", tmp_path / "run1"], tmp_path / "out", "--effects-dir", rows_per_shard=7
    )
    rows, counts = dict_sum(first + second)
    store = EffectStore(tmp_path / "out", "--effects-dir")
    assert store.latents_R.tolist() == sorted(rows)
    assert store.counts_R.tolist() == [counts[i] for i in sorted(rows)]
    expected = torch.stack([rows[i] for i in sorted(rows)])
    assert torch.allclose(store.rows(0, len(rows)), expected, atol=1e-6)
    assert torch.allclose(store.rows(3, 11), expected[3:11], atol=1e-6)  # across shard borders


def test_accumulator_allocates_rows_only_for_ablated_latents() -> None:
    acc = RowAccumulator(1000, 6, torch.device("cpu"))
    acc.add(torch.tensor([7, 3, 7]), torch.ones(3, 6))
    latents, rows, counts = acc.take()
    assert latents.tolist() == [3, 7]
    assert counts.tolist() == [1, 2]
    assert rows[1].tolist() == [2.0] * 6
    assert acc.n_rows == 0


def test_summing_stores_of_different_saes_is_refused(tmp_path: Path) -> None:
    store_from(tmp_path / "a", random_ablations(0, 2), 1)
    other = StoreInfo({"id": "b", "width": 50}, {"id": "r", "width": 6}, "tiny")
    write_manifest(tmp_path / "b", other, [], {})
    with pytest.raises(UserInputError, match="ablator"):
        compact([tmp_path / "a", tmp_path / "b"], tmp_path / "out", "--effects-dir")


def test_a_directory_without_a_store_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as error:
        EffectStore(tmp_path, "--effects-dir")
    assert error.value.flag == "--effects-dir"
