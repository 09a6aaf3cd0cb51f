"""Checksums and count invariants: every damaged byte is refused, every real count passes."""

import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from sae_hacking.core.cooccurrence import add_counts_
from sae_hacking.core.triangle import triangle_size
from sae_hacking.errors import UserInputError
from sae_hacking.io.bundle import load_bundle, save_bundle, tensor_checksum
from sae_hacking.io.cooccurrence_results import check_counts, load_cooccurrence, save_counts
from sae_hacking.memory import check_fits

WIDTH = 9


def data_start(path: Path) -> int:
    with open(path, "rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
    return 8 + header_len


def test_every_flipped_data_byte_of_a_bundle_is_refused(tmp_path: Path) -> None:
    tensors = {"w": torch.randn(5, 3), "n": torch.arange(4), "flag": torch.tensor([True, False])}
    save_bundle(tmp_path, "state", tensors, {"step": 1})
    path = tmp_path / "state.safetensors"
    intact = path.read_bytes()
    start = data_start(path)
    assert len(intact) - start == 5 * 3 * 4 + 4 * 8 + 2
    for offset in range(start, len(intact)):
        damaged = bytearray(intact)
        damaged[offset] ^= 0x01  # the smallest damage: one bit
        path.write_bytes(bytes(damaged))
        with pytest.raises(UserInputError, match="fails its checksum"):
            load_bundle(tmp_path, "state")
    path.write_bytes(intact)
    loaded, _ = load_bundle(tmp_path, "state")
    assert all(torch.equal(loaded[key], value) for key, value in tensors.items())


def test_checksum_of_a_tensor_is_that_of_its_bytes_in_the_file(tmp_path: Path) -> None:
    tensor = torch.randn(7, 2).to(torch.bfloat16)
    save_bundle(tmp_path, "b", {"x": tensor}, {})
    manifest = json.loads((tmp_path / "b.json").read_text())
    assert manifest["tensors"]["x"]["crc32"] == tensor_checksum(tensor)
    assert load_bundle(tmp_path, "b")[0]["x"].equal(tensor)


def random_counts(seed: int, tokens: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    active_TE = torch.rand(tokens, WIDTH, generator=generator) < 0.3
    counts_P = torch.zeros(triangle_size(WIDTH), dtype=torch.int32)
    firing_E = torch.zeros(WIDTH, dtype=torch.int64)
    add_counts_(counts_P, firing_E, active_TE)
    return counts_P, firing_E


def manifest_of(tokens: int) -> dict[str, Any]:
    return {
        "layout": "packed_upper_triangle",
        "width": WIDTH,
        "rows": None,
        "tokens": tokens,
        "complete": True,
    }


def first_impossible_pair(counts_P: torch.Tensor, firing_E: torch.Tensor) -> tuple[int, int] | None:
    """The slow reference: walk the pairs in storage order."""
    index = 0
    for i in range(WIDTH):
        for j in range(i + 1, WIDTH):
            count = int(counts_P[index])
            if count < 0 or count > min(int(firing_E[i]), int(firing_E[j])):
                return i, j
            index += 1
    return None


@pytest.mark.parametrize("seed", range(6))
def test_count_invariants_pass_real_counts_and_name_the_first_impossible_pair(
    tmp_path: Path, seed: int
) -> None:
    counts_P, firing_E = random_counts(seed)
    save_counts(tmp_path, {"pair_counts": counts_P, "firing_counts": firing_E}, manifest_of(40))
    check_counts(tmp_path / "counts.safetensors", manifest_of(40), "--cooccurrence-dir")

    generator = torch.Generator().manual_seed(100 + seed)
    broken_P = counts_P.clone()
    for index in torch.randint(0, broken_P.shape[0], (2,), generator=generator).tolist():
        broken_P[index] += int(torch.randint(1, 30, (1,), generator=generator))
    expected = first_impossible_pair(broken_P, firing_E)
    save_counts(tmp_path, {"pair_counts": broken_P, "firing_counts": firing_E}, manifest_of(40))
    if expected is None:  # the added counts stayed within both firing counts
        check_counts(tmp_path / "counts.safetensors", manifest_of(40), "--cooccurrence-dir")
        return
    with pytest.raises(UserInputError, match=rf"pair \({expected[0]}, {expected[1]}\)"):
        load_cooccurrence(tmp_path)


def test_a_run_that_counted_no_tokens_is_refused(tmp_path: Path) -> None:
    counts_P = torch.zeros(triangle_size(WIDTH), dtype=torch.int32)
    firing_E = torch.zeros(WIDTH, dtype=torch.int64)
    manifest = manifest_of(0)
    save_counts(tmp_path, {"pair_counts": counts_P, "firing_counts": firing_E}, manifest)
    with pytest.raises(UserInputError, match="counted no tokens"):
        load_cooccurrence(tmp_path)


def test_sizes_beyond_free_memory_are_refused_with_both_numbers() -> None:
    check_fits(1024, "--width", "an SAE", available=2048)
    with pytest.raises(UserInputError, match=r"needs about 4\.0 KiB but 2\.0 KiB"):
        check_fits(4096, "--width", "an SAE", available=2048)
