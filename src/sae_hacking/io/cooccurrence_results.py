"""Co-occurrence result files: write, read by memory-map, and sum across runs.

A run directory holds the bundle ``counts`` (``counts.safetensors`` + ``counts.json``) and, once
complete and counting all pairs, ``ever_cooccurred`` (the bit-packed ``pair_counts > 0``). The
tensors are uncompressed safetensors, so a reader memory-maps them and touches only the pairs it
looks up. Layouts:

- ``packed_upper_triangle``: ``pair_counts`` [E(E-1)/2], pair (i < j) at ``i*E - i*(i+1)/2 + j-i-1``.
- ``rows``: ``row_counts`` [R, E] for the latents ``rows``; entry (r, r) holds r's firing count.

Both carry ``firing_counts`` [E] (int64): the tokens on which each latent fired.
"""

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from sae_hacking.core.triangle import BITS_PER_WORD, bits_at, pack_bits, pair_index, triangle_size
from sae_hacking.errors import UserInputError
from sae_hacking.io.bundle import bundle_paths, load_bundle, load_manifest, save_bundle

COUNTS = "counts"
EVER = "ever_cooccurred"
TRIANGLE = "packed_upper_triangle"
ROWS = "rows"
_NUMPY_DTYPES = {"I32": np.int32, "I64": np.int64}
# Tensors are summed or bit-packed this many entries at a time, so memory stays near one copy.
_CHUNK = 1 << 26


def memmap_tensor(path: Path, key: str) -> np.ndarray:
    """A read-only memory map of one tensor in a safetensors file (no copy, no full read)."""
    with open(path, "rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_len))
    entry = header[key]
    begin, end = entry["data_offsets"]
    dtype = _NUMPY_DTYPES[entry["dtype"]]
    count = (end - begin) // np.dtype(dtype).itemsize
    array = np.memmap(path, dtype=dtype, mode="r", offset=8 + header_len + begin, shape=(count,))
    return array.reshape(entry["shape"])


def save_counts(directory: Path, tensors: dict[str, Tensor], manifest: dict[str, Any]) -> None:
    """Write the counts bundle atomically (a checkpoint when ``manifest['complete']`` is false)."""
    save_bundle(directory, COUNTS, tensors, manifest)


def save_ever_cooccurred(directory: Path, pair_counts_P: Tensor, manifest: dict[str, Any]) -> None:
    """Write the bit-packed ``pair_counts > 0`` triangle, packed a slice at a time."""
    words = []
    for start in range(0, pair_counts_P.shape[0], _CHUNK):
        words.append(pack_bits(pair_counts_P[start : start + _CHUNK] > 0).cpu())
    bits_W = torch.cat(words) if words else torch.zeros(0, dtype=torch.int64)
    save_bundle(
        directory,
        EVER,
        {"bits": bits_W},
        {**manifest, "bit_order": "pair p at bit p % 64 of int64 word p // 64"},
    )


@dataclass(frozen=True)
class CooccurrenceResults:
    """A finished co-occurrence run, its large tensors memory-mapped."""

    directory: Path
    manifest: dict[str, Any]
    firing_E: Int[Tensor, " E"]

    @property
    def width(self) -> int:
        return int(self.manifest["width"])

    @property
    def tokens(self) -> int:
        return int(self.manifest["tokens"])

    @property
    def prompts(self) -> int:
        return int(self.manifest["prompts"])

    def _counts_map(self) -> np.ndarray:
        key = "pair_counts" if self.manifest["layout"] == TRIANGLE else "row_counts"
        return memmap_tensor(bundle_paths(self.directory, COUNTS)[0], key)

    def pair_counts(
        self, first_D: Int[Tensor, " D"], second_D: Int[Tensor, " D"]
    ) -> Int[Tensor, " D"]:
        """Tokens on which both latents of each pair fired (pairs in either order, i != j)."""
        if self.manifest["layout"] != TRIANGLE:
            raise UserInputError(
                "--cooccurrence-dir",
                f"'{self.directory}' counted only --rows; it has no pair counts",
            )
        low_D, high_D = torch.minimum(first_D, second_D), torch.maximum(first_D, second_D)
        index_D = pair_index(low_D.cpu(), high_D.cpu(), self.width).numpy()
        return torch.from_numpy(np.asarray(self._counts_map()[index_D], dtype=np.int64))

    def ever_cooccurred(
        self, first_D: Int[Tensor, " D"], second_D: Int[Tensor, " D"]
    ) -> Bool[Tensor, " D"]:
        """Whether each pair ever fired together, from the 1-bit-per-pair file."""
        words = memmap_tensor(bundle_paths(self.directory, EVER)[0], "bits")
        low_D, high_D = torch.minimum(first_D, second_D), torch.maximum(first_D, second_D)
        index_D = pair_index(low_D.cpu(), high_D.cpu(), self.width)
        word_D = index_D // BITS_PER_WORD
        # Gather only the words holding the asked pairs, then read their bits in place.
        words_D = torch.from_numpy(np.asarray(words[word_D.numpy()], dtype=np.int64))
        return bits_at(
            words_D, torch.arange(index_D.shape[0]) * BITS_PER_WORD + index_D % BITS_PER_WORD
        )

    def lookup(self) -> Callable[[Tensor, Tensor], Tensor]:
        """``(first_P, second_P) -> counts_P``, the pair search's co-occurrence lookup."""
        return self.pair_counts


def load_cooccurrence(directory: Path, flag: str = "--cooccurrence-dir") -> CooccurrenceResults:
    """Open a finished run (firing counts in memory, pair counts memory-mapped on demand)."""
    if not bundle_paths(directory, COUNTS)[1].is_file():
        raise UserInputError(
            flag, f"'{directory}' has no {COUNTS}.json; give a gemma_cooccurrences.py run directory"
        )
    manifest = load_manifest(directory, COUNTS)
    if not manifest.get("complete", False):
        raise UserInputError(
            flag, f"'{directory}' holds an unfinished run; finish it with --resume"
        )
    tensors, _ = load_bundle(directory, COUNTS, keys=["firing_counts"])
    return CooccurrenceResults(directory, manifest, tensors["firing_counts"])


MERGE_KEYS = ("layout", "width", "rows", "model", "sae_release", "sae_id", "hook_name", "count_bos")


def merge_results(directories: list[Path], output: Path) -> dict[str, Any]:
    """Sum finished runs of the same model, SAE and layout into ``output``; returns its manifest."""
    runs = [load_cooccurrence(d, flag="merge") for d in directories]
    first = runs[0].manifest
    for run in runs[1:]:
        for key in MERGE_KEYS:
            if run.manifest.get(key) != first.get(key):
                raise UserInputError(
                    "merge",
                    f"'{run.directory}' has {key}={run.manifest.get(key)!r}, '{runs[0].directory}' has {first.get(key)!r}",
                )
    tokens = sum(run.tokens for run in runs)
    dtype = torch.int32 if tokens < 2**31 else torch.int64
    key = "pair_counts" if first["layout"] == TRIANGLE else "row_counts"
    maps = [run._counts_map().reshape(-1) for run in runs]
    total = torch.zeros(maps[0].shape[0], dtype=dtype)
    for start in range(0, total.shape[0], _CHUNK):
        for array in maps:
            part = torch.from_numpy(np.asarray(array[start : start + _CHUNK], dtype=np.int64))
            total[start : start + part.shape[0]] += part.to(dtype)
    if first["layout"] == ROWS:
        total = total.reshape(len(first["rows"]), first["width"])
    firing = torch.stack([run.firing_E for run in runs]).sum(0)
    manifest = {
        **first,
        "tokens": tokens,
        "prompts": sum(run.prompts for run in runs),
        "count_dtype": str(dtype).removeprefix("torch."),
        "dataset": [run.manifest["dataset"] for run in runs],
        "merged_from": [str(run.directory) for run in runs],
        "progress": None,
        "complete": True,
    }
    save_counts(output, {key: total, "firing_counts": firing}, manifest)
    if first["layout"] == TRIANGLE:
        assert total.shape[0] == triangle_size(first["width"])
        save_ever_cooccurred(output, total, manifest)
    return manifest
