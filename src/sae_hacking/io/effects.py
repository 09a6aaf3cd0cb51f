"""Effect rows: the summed effect of ablating each ablator latent, stored only for ablated latents.

A store is a directory of shards plus ``effects.json``. Each shard is a bundle holding
``latents_R`` (sorted ablator latent ids), ``effects_RE`` (float32 sums of clean - ablated reader
latents, one row per ablator latent) and ``counts_R`` (how many ablations were summed). A latent
may appear in several shards (several flushes, ranks or runs): its effect is the sum. ``compact``
merges any number of stores into one whose shards are disjoint and sorted, streaming one block of
latent ids at a time, so no step holds a dense width x width matrix.

Every open checks each shard's checksums and what a store promises (latent ids sorted, distinct
and within the ablator's width; counts at least 1; effects of the reader's width): a damaged shard is
refused.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from safetensors import safe_open
from torch import Tensor

from sae_hacking.errors import UserInputError
from sae_hacking.io.atomic import atomic_write_json
from sae_hacking.io.bundle import (
    bundle_paths,
    damaged,
    load_manifest,
    read_json_object,
    save_bundle,
    verify_file,
)

STORE_FORMAT = "sae_hacking.effects/1"
MANIFEST = "effects.json"


class RowAccumulator:
    """Sums effect rows by ablator latent on the device; rows are allocated on first ablation."""

    def __init__(self, ablator_width: int, reader_width: int, device: torch.device) -> None:
        self.ablator_width = ablator_width
        self.reader_width = reader_width
        self.device = device
        self._slot_E = torch.full((ablator_width,), -1, dtype=torch.long, device=device)
        self._latents_R = torch.zeros(0, dtype=torch.long, device=device)
        self._rows_RY = torch.zeros(0, reader_width, device=device)
        self._counts_R = torch.zeros(0, dtype=torch.long, device=device)

    @property
    def n_rows(self) -> int:
        return int(self._latents_R.shape[0])

    def add(self, latents_K: Int[Tensor, " K"], effects_KY: Float[Tensor, "K Y"]) -> None:
        """Add one ablation's effect per row (a latent may repeat)."""
        latents_K = latents_K.to(self.device)
        new_R = latents_K.unique()
        new_R = new_R[self._slot_E[new_R] < 0]
        if new_R.numel():
            self._slot_E[new_R] = torch.arange(
                self.n_rows, self.n_rows + new_R.numel(), device=self.device
            )
            self._latents_R = torch.cat([self._latents_R, new_R])
            self._rows_RY = torch.cat(
                [self._rows_RY, self._rows_RY.new_zeros(new_R.numel(), self.reader_width)]
            )
            self._counts_R = torch.cat([self._counts_R, self._counts_R.new_zeros(new_R.numel())])
        slots_K = self._slot_E[latents_K]
        self._rows_RY.index_add_(0, slots_K, effects_KY.to(self.device, torch.float32))
        self._counts_R.index_add_(0, slots_K, torch.ones_like(slots_K))

    def take(self) -> tuple[Tensor, Tensor, Tensor]:
        """The accumulated rows sorted by latent (on the CPU), and an empty accumulator."""
        order_R = self._latents_R.argsort()
        taken = (
            self._latents_R[order_R].cpu(),
            self._rows_RY[order_R].cpu(),
            self._counts_R[order_R].cpu(),
        )
        self.__init__(self.ablator_width, self.reader_width, self.device)
        return taken


@dataclass(frozen=True)
class StoreInfo:
    """What a store is about: the SAEs and widths every shard must share."""

    ablator: dict[str, Any]
    reader: dict[str, Any]
    model: str

    def describe(self) -> dict[str, Any]:
        return {"ablator": self.ablator, "reader": self.reader, "model": self.model}


def write_shard(
    directory: Path, name: str, latents_R: Tensor, rows_RY: Tensor, counts_R: Tensor
) -> dict[str, Any]:
    """Write one shard (rows sorted by latent) and return its manifest entry."""
    save_bundle(
        directory,
        name,
        {"latents_R": latents_R, "effects_RE": rows_RY.float(), "counts_R": counts_R},
        {"rows": int(latents_R.shape[0])},
    )
    return {"name": name, "rows": int(latents_R.shape[0])}


def write_manifest(
    directory: Path, info: StoreInfo, shards: list[dict[str, Any]], extra: dict[str, Any]
) -> None:
    """Atomically record which shards make up the store (shards not listed are not part of it)."""
    atomic_write_json(
        directory / MANIFEST, {"format": STORE_FORMAT, **info.describe(), "shards": shards, **extra}
    )


def read_manifest(directory: Path, flag: str) -> dict[str, Any]:
    """A store's manifest, or a one-line error naming ``flag``."""
    path = directory / MANIFEST
    if not path.is_file():
        raise UserInputError(
            flag, f"'{directory}' has no {MANIFEST}; give a selective-ablation effects directory"
        )
    manifest = read_json_object(path, flag)
    if manifest.get("format") != STORE_FORMAT:
        raise UserInputError(flag, f"'{path}' is not an effects store ({manifest.get('format')})")
    try:
        for key in ("ablator", "reader"):
            int(manifest[key]["width"])
        names = [str(entry["name"]) for entry in manifest["shards"]]
    except (KeyError, TypeError, ValueError) as error:
        raise damaged(flag, path, "it lacks the SAE widths or the shard list") from error
    if any("/" in name or name.startswith(".") for name in names):
        raise damaged(flag, path, "a shard name is a path")
    return manifest


def check_same_sources(manifests: list[dict[str, Any]], flag: str) -> None:
    """Refuse to sum stores made with different SAEs or models."""
    first = manifests[0]
    for other in manifests[1:]:
        for key in ("ablator", "reader", "model"):
            if other[key] != first[key]:
                raise UserInputError(
                    flag,
                    f"the stores differ in {key} ({first[key]} vs {other[key]}); sum only runs of one setup",
                )


@dataclass(frozen=True)
class _Shard:
    path: Path
    latents_R: Tensor


def _shards(directory: Path, manifest: dict[str, Any], flag: str) -> list[_Shard]:
    """The store's shards, each checked against its checksums and what a store promises."""
    shards = []
    ablator_width, reader_width = manifest["ablator"]["width"], manifest["reader"]["width"]
    for entry in manifest["shards"]:
        path, _ = bundle_paths(directory, entry["name"])
        if not path.is_file():
            raise UserInputError(flag, f"'{path}' is missing; the store is incomplete")
        described = load_manifest(directory, entry["name"], flag).get("tensors", {})
        verify_file(path, described, flag, ["latents_R", "effects_RE", "counts_R"])
        with safe_open(str(path), framework="pt") as handle:
            latents_R = handle.get_tensor("latents_R")
            counts_R = handle.get_tensor("counts_R")
            shape = list(handle.get_slice("effects_RE").get_shape())
        _check_shard(path, latents_R, counts_R, shape, ablator_width, reader_width, flag)
        shards.append(_Shard(path, latents_R))
    return shards


def _check_shard(
    path: Path,
    latents_R: Tensor,
    counts_R: Tensor,
    effects_shape: list[int],
    ablator_width: int,
    reader_width: int,
    flag: str,
) -> None:
    rows = latents_R.shape[0]
    if effects_shape != [rows, reader_width] or list(counts_R.shape) != [rows]:
        raise damaged(flag, path, f"{rows} latents but effects of shape {effects_shape}")
    if rows and (latents_R.min() < 0 or latents_R.max() >= ablator_width):
        raise damaged(flag, path, f"a latent id is out of range 0-{ablator_width - 1}")
    if rows > 1 and not bool((latents_R[1:] > latents_R[:-1]).all()):
        raise damaged(flag, path, "its latent ids are not sorted and distinct")
    if rows and counts_R.min() < 1:
        raise damaged(flag, path, "a latent has an ablation count below 1")


def compact(
    sources: list[Path], out: Path, info_flag: str, rows_per_shard: int = 4096
) -> dict[str, Any]:
    """Sum stores into ``out``: disjoint shards sorted by latent, at most ``rows_per_shard`` rows each.

    Memory: one output shard (rows_per_shard x reader width x 4 bytes) plus one slice of an input.
    """
    manifests = [read_manifest(source, info_flag) for source in sources]
    check_same_sources(manifests, info_flag)
    shards = [
        shard
        for source, m in zip(sources, manifests, strict=True)
        for shard in _shards(source, m, info_flag)
    ]
    reader_width = int(manifests[0]["reader"]["width"])
    all_latents = (
        torch.cat([s.latents_R for s in shards]).unique()
        if shards
        else torch.zeros(0, dtype=torch.long)
    )
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for number, begin in enumerate(range(0, all_latents.shape[0], rows_per_shard)):
        block_R = all_latents[begin : begin + rows_per_shard]
        rows_RY = torch.zeros(block_R.shape[0], reader_width)
        counts_R = torch.zeros(block_R.shape[0], dtype=torch.long)
        low, high = int(block_R[0]), int(block_R[-1])
        for shard in shards:
            # Shards are sorted by latent, so a block of latent ids is one contiguous slice.
            start = int(torch.searchsorted(shard.latents_R, low))
            stop = int(torch.searchsorted(shard.latents_R, high, right=True))
            if start == stop:
                continue
            with safe_open(str(shard.path), framework="pt") as handle:
                part_RY = handle.get_slice("effects_RE")[start:stop]
                part_counts = handle.get_slice("counts_R")[start:stop]
            where = torch.searchsorted(block_R, shard.latents_R[start:stop])
            rows_RY.index_add_(0, where, part_RY)
            counts_R.index_add_(0, where, part_counts)
        entries.append(write_shard(out, f"effects-{number:05d}", block_R, rows_RY, counts_R))
    extra = {"compacted": True, "sources": [str(s) for s in sources]}
    info = StoreInfo(manifests[0]["ablator"], manifests[0]["reader"], manifests[0]["model"])
    write_manifest(out, info, entries, extra)
    return read_manifest(out, info_flag)


class EffectStore:
    """A compacted store opened for reading: all latent ids and counts, rows read by range (memory-mapped)."""

    def __init__(self, directory: Path, flag: str) -> None:
        self.manifest = read_manifest(directory, flag)
        if not self.manifest.get("compacted"):
            raise UserInputError(
                flag, f"'{directory}' is not compacted; run the pair search on the run's effects/"
            )
        self._shards = _shards(directory, self.manifest, flag)
        self.latents_R = (
            torch.cat([s.latents_R for s in self._shards])
            if self._shards
            else torch.zeros(0, dtype=torch.long)
        )
        counts = []
        for shard in self._shards:
            with safe_open(str(shard.path), framework="pt") as handle:
                counts.append(handle.get_tensor("counts_R"))
        self.counts_R = torch.cat(counts) if counts else torch.zeros(0, dtype=torch.long)
        self._offsets = [0]
        for shard in self._shards:
            self._offsets.append(self._offsets[-1] + int(shard.latents_R.shape[0]))

    def rows(self, start: int, stop: int) -> Tensor:
        """Rows ``start:stop`` in latent order, read from the shards that hold them."""
        parts = []
        for number, shard in enumerate(self._shards):
            low, high = self._offsets[number], self._offsets[number + 1]
            a, b = max(start, low), min(stop, high)
            if a < b:
                with safe_open(str(shard.path), framework="pt") as handle:
                    parts.append(handle.get_slice("effects_RE")[a - low : b - low])
        width = int(self.manifest["reader"]["width"])
        return torch.cat(parts) if parts else torch.zeros(0, width)
