"""Co-occurrence result files: write, read by memory-map, and sum across runs.

A run directory holds the bundle ``counts`` (``counts.safetensors`` + ``counts.json``) and, when
counting all pairs, ``ever_cooccurred`` (the bit-packed ``pair_counts > 0``), both rewritten at
every checkpoint. The tensors are uncompressed safetensors, so a reader memory-maps them and
touches only the pairs it looks up. Layouts:

- ``packed_upper_triangle``: ``pair_counts`` [E(E-1)/2], pair (i < j) at ``i*E - i*(i+1)/2 + j-i-1``.
- ``rows``: ``row_counts`` [R, E] for the latents ``rows``; entry (r, r) holds r's firing count.

Both carry ``firing_counts`` [E] (int64): the tokens on which each latent fired, and with
``--top-contexts k`` each latent's best k contexts (``cooccurrence/contexts.py``): ``top_activations``
[E, k], ``top_prompts`` and ``top_positions`` [E, k] (prompt -1: empty slot) and ``top_tokens``
[E, k, 11] (the ids of 8 tokens before to 2 after, -1 outside the prompt), saved in the same file
as the counts so both always describe the same checkpoint. ``activation_histogram`` [E, 192] (int64)
counts each latent's non-zero activations in fixed log-spaced bins (``core/thresholds.py``,
described by the manifest's ``activation_histogram``), to fit firing thresholds from later; the
manifest's ``firing`` says when a latent counted as firing (``io/firing_thresholds.py``).
``token_bitmap`` [E, 1024] (uint8, 0 or 1) marks the hashed ids of the tokens each latent fired on
(``core/distinct_tokens.py``, described by the manifest's ``token_bitmap``): merged by OR, it
estimates how many distinct tokens a latent fires on (its generality).
``vocabulary.json`` holds the tokenizer's text of every token id, so a report shows contexts
without the tokenizer.

Each safetensors file carries a copy of its manifest in its own header, so the one atomic rename
of the tensor file replaces tensors and manifest together; the JSON beside it can lag one
checkpoint behind, or be cut short, if a run is killed between the two renames, and is then
overruled. ``ever_cooccurred`` is written before ``counts``; a reader uses its bits only when both
headers name the same checkpoint, and otherwise reads ``pair_counts > 0`` from the counts.

Every open checks each tensor's CRC-32 against the manifest and the counts against what counting
can produce (``check_counts``), so a damaged file is refused instead of counted.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int, UInt8
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from sae_hacking.cooccurrence.contexts import CONTEXT_BEFORE, KEYS, NONE, TopContexts, merge_top
from sae_hacking.core.distinct_tokens import distinct_tokens
from sae_hacking.core.triangle import BITS_PER_WORD, bits_at, pack_bits, pair_index, triangle_size
from sae_hacking.errors import UserInputError
from sae_hacking.io.atomic import atomic_write, atomic_write_json, atomic_write_text
from sae_hacking.io.bundle import (
    MANIFEST_FORMAT,
    bundle_paths,
    damaged,
    describe_tensors,
    read_header,
    read_json_object,
    verify_file,
)
from sae_hacking.io.firing_thresholds import (
    HISTOGRAM,
    THRESHOLDS_FILE,
    describe_firing,
    firing_rule,
    run_thresholds,
    same_firing,
)

COUNTS = "counts"
EVER = "ever_cooccurred"
TRIANGLE = "packed_upper_triangle"
ROWS = "rows"
TOKEN_BITMAP = "token_bitmap"
_NUMPY_DTYPES = {"U8": np.uint8, "I32": np.int32, "I64": np.int64}
# Tensors are summed or bit-packed this many entries at a time, so memory stays near one copy.
_CHUNK = 1 << 26


VOCABULARY = "vocabulary.json"

# What identifies a checkpoint's data: equal values mean equal counts.
CHECKPOINT_KEYS = ("tokens", "prompts", "progress", "merged_from", "complete")


def memmap_tensor(path: Path, key: str, flag: str = "--cooccurrence-dir") -> np.ndarray:
    """A read-only memory map of one tensor in a safetensors file (no copy, no full read)."""
    header, data_start = read_header(path, flag)
    entry = header[key]
    begin, end = entry["data_offsets"]
    dtype = _NUMPY_DTYPES[entry["dtype"]]
    count = (end - begin) // np.dtype(dtype).itemsize
    array = np.memmap(path, dtype=dtype, mode="r", offset=data_start + begin, shape=(count,))
    return array.reshape(entry["shape"])


def has_results(directory: Path, name: str = COUNTS) -> bool:
    """Whether ``directory`` holds the bundle ``name`` (its tensor file, which carries its manifest)."""
    return bundle_paths(directory, name)[0].is_file()


def read_manifest(directory: Path, name: str = COUNTS, flag: str = "--resume") -> dict[str, Any]:
    """The bundle's manifest: the JSON, unless it is missing, cut short or names another
    checkpoint than the copy in the tensor file's header (a run killed between the two renames),
    which then wins. The tensors' checksums always come from the header's copy, written in the
    same rename as the tensors."""
    tensor_path, manifest_path = bundle_paths(directory, name)
    embedded = _embedded_manifest(tensor_path, flag) if tensor_path.is_file() else None
    try:
        manifest = read_json_object(manifest_path, flag)
    except UserInputError:
        if embedded is None:
            raise
        return embedded
    if embedded is None:
        return manifest
    if not same_checkpoint(manifest, embedded):
        return embedded
    return {**manifest, "tensors": embedded.get("tensors", {})}


def _embedded_manifest(tensor_path: Path, flag: str) -> dict[str, Any] | None:
    header, _ = read_header(tensor_path, flag)
    metadata = header.get("__metadata__", {})
    embedded = metadata.get("manifest") if isinstance(metadata, dict) else None
    if embedded is None:
        return None
    try:
        manifest = json.loads(embedded)
    except json.JSONDecodeError as error:
        raise damaged(flag, tensor_path, "its embedded manifest is not JSON") from error
    if not isinstance(manifest, dict):
        raise damaged(flag, tensor_path, "its embedded manifest is not a JSON object")
    return manifest


def read_tensors(
    directory: Path, name: str = COUNTS, keys: list[str] | None = None, flag: str = "--resume"
) -> dict[str, Tensor]:
    """A bundle's tensors (all, or only ``keys``), from the tensor file alone, after checking every
    tensor's checksum (a full read of the file, at about 0.8 GB/s)."""
    manifest = read_manifest(directory, name, flag)
    tensor_path = bundle_paths(directory, name)[0]
    verify_file(tensor_path, manifest.get("tensors", {}), flag)
    if name == COUNTS:
        check_counts(tensor_path, manifest, flag)
    with safe_open(str(tensor_path), framework="pt") as handle:
        return {
            key: handle.get_tensor(key) for key in (keys if keys is not None else handle.keys())
        }


def check_counts(path: Path, manifest: dict[str, Any], flag: str) -> None:
    """Refuse counts no counting can produce: a negative count, a latent firing on more tokens
    than were counted, a pair co-occurring more often than either of its latents fired."""
    try:
        tokens, width, layout = int(manifest["tokens"]), int(manifest["width"]), manifest["layout"]
        rows = list(manifest["rows"] or []) if layout == ROWS else []
    except (KeyError, TypeError, ValueError) as error:
        raise damaged(flag, path, "its manifest lacks tokens, width or layout") from error
    firing = np.asarray(memmap_tensor(path, "firing_counts", flag), dtype=np.int64)
    key = "pair_counts" if layout == TRIANGLE else "row_counts"
    counts = memmap_tensor(path, key, flag)
    shape = [triangle_size(width)] if layout == TRIANGLE else [len(rows), width]
    if list(firing.shape) != [width] or list(counts.shape) != shape:
        raise damaged(flag, path, f"tensors of shapes {list(firing.shape)}, {list(counts.shape)}")
    if firing.min(initial=0) < 0 or firing.max(initial=0) > tokens:
        latent = int(np.argmax((firing < 0) | (firing > tokens)))
        raise UserInputError(
            flag,
            f"'{path}' is impossible: latent {latent} fired on {int(firing[latent])} tokens, "
            f"more tokens than the run counted ({tokens}); the file is damaged",
        )
    for row in range(len(rows) if layout == ROWS else width):
        if layout == ROWS:
            latent, counts_J = rows[row], counts[row]
            bound_J, others = np.minimum(firing[latent], firing), np.arange(width)
            bound_J[latent] = firing[latent]
        else:
            start = row * width - row * (row + 1) // 2
            latent, counts_J = row, counts[start : start + width - row - 1]
            bound_J, others = np.minimum(firing[row], firing[row + 1 :]), np.arange(row + 1, width)
        bad_J = (counts_J > bound_J) | (counts_J < 0)
        if bad_J.any():
            j = int(np.argmax(bad_J))
            raise UserInputError(
                flag,
                f"'{path}' is impossible: pair ({latent}, {int(others[j])}) co-occurred on "
                f"{int(counts_J[j])} tokens, more often than one of them fired "
                f"({int(bound_J[j])}); the file is damaged",
            )
    if HISTOGRAM in manifest.get("tensors", {}):
        _check_histogram(path, np.asarray(memmap_tensor(path, HISTOGRAM, flag)), firing, flag)
    if TOKEN_BITMAP in manifest.get("tensors", {}):
        _check_token_bits(path, np.asarray(memmap_tensor(path, TOKEN_BITMAP, flag)), firing, flag)


def _check_histogram(path: Path, histogram: np.ndarray, firing: np.ndarray, flag: str) -> None:
    """Every firing is a non-zero activation, so a latent's histogram holds at least its firings."""
    if histogram.ndim != 2 or histogram.shape[0] != firing.shape[0]:
        raise damaged(flag, path, f"activation histograms of shape {list(histogram.shape)}")
    held = histogram.sum(axis=1)
    if histogram.min(initial=0) < 0 or (held < firing).any():
        latent = int(np.argmax((held < firing) | (histogram < 0).any(axis=1)))
        raise UserInputError(
            flag,
            f"'{path}' is impossible: latent {latent} fired on {int(firing[latent])} tokens but "
            f"its activation histogram holds {int(held[latent])}; the file is damaged",
        )


def _check_token_bits(path: Path, bits: np.ndarray, firing: np.ndarray, flag: str) -> None:
    """Bits are 0 or 1, and a latent has a bit set exactly when it fired."""
    if bits.ndim != 2 or bits.shape[0] != firing.shape[0]:
        raise damaged(flag, path, f"token bitmaps of shape {list(bits.shape)}")
    bad_E = (bits.max(axis=1, initial=0) > 1) | (bits.any(axis=1) != (firing > 0))
    if bad_E.any():
        latent = int(np.argmax(bad_E))
        raise UserInputError(
            flag,
            f"'{path}' is impossible: latent {latent} fired on {int(firing[latent])} tokens but "
            f"its token bitmap sets {int(bits[latent].sum())} bits; the file is damaged",
        )


def has_vocabulary(directory: Path) -> bool:
    return (directory / VOCABULARY).is_file()


def write_vocabulary(directory: Path, tokens: list[str]) -> None:
    """Each token id's text (index = id), to show contexts without loading the tokenizer."""
    atomic_write_json(directory / VOCABULARY, {"tokens": tokens})


def read_vocabulary(directory: Path, flag: str = "--cooccurrence-dir") -> list[str]:
    path = directory / VOCABULARY
    tokens = read_json_object(path, flag).get("tokens")
    if not isinstance(tokens, list):
        raise damaged(flag, path, "it holds no token list")
    return [str(t) for t in tokens]


def _save(directory: Path, name: str, tensors: dict[str, Tensor], manifest: dict[str, Any]) -> None:
    """Write the tensors with the manifest in their header (one atomic rename), then the JSON copy."""
    tensor_path, manifest_path = bundle_paths(directory, name)
    cpu = {key: value.detach().contiguous().cpu() for key, value in tensors.items()}
    full = {"format": MANIFEST_FORMAT, **manifest, "tensors": describe_tensors(cpu)}
    metadata = {"manifest": json.dumps(full)}
    atomic_write(tensor_path, lambda tmp: save_file(cpu, str(tmp), metadata=metadata))
    atomic_write_json(manifest_path, full)


def save_counts(directory: Path, tensors: dict[str, Tensor], manifest: dict[str, Any]) -> None:
    """Write the counts bundle atomically (a checkpoint when ``manifest['complete']`` is false)."""
    _save(directory, COUNTS, tensors, manifest)


def save_ever_cooccurred(directory: Path, pair_counts_P: Tensor, manifest: dict[str, Any]) -> None:
    """Write the bit-packed ``pair_counts > 0`` triangle, packed a slice at a time.

    Write it before the counts of the same checkpoint: readers trust it only when it matches them.
    """
    words = []
    for start in range(0, pair_counts_P.shape[0], _CHUNK):
        words.append(pack_bits(pair_counts_P[start : start + _CHUNK] > 0).cpu())
    bits_W = torch.cat(words) if words else torch.zeros(0, dtype=torch.int64)
    _save(
        directory,
        EVER,
        {"bits": bits_W},
        {**manifest, "bit_order": "pair p at bit p % 64 of int64 word p // 64"},
    )


def same_checkpoint(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two manifests describe the same counted data."""
    return all(first.get(key) == second.get(key) for key in CHECKPOINT_KEYS)


@dataclass(frozen=True)
class CooccurrenceResults:
    """A co-occurrence run (finished, or stopped at a checkpoint), its large tensors memory-mapped."""

    directory: Path
    manifest: dict[str, Any]
    firing_E: Int[Tensor, " E"]
    flag: str = "--cooccurrence-dir"

    @property
    def width(self) -> int:
        return int(self.manifest["width"])

    @property
    def tokens(self) -> int:
        return int(self.manifest["tokens"])

    @property
    def prompts(self) -> int:
        return int(self.manifest["prompts"])

    @property
    def complete(self) -> bool:
        """False for a run stopped at a checkpoint: its counts cover only ``tokens`` tokens."""
        return bool(self.manifest.get("complete", False))

    def ever_is_current(self) -> bool:
        """Whether the bit file holds the same checkpoint as the counts."""
        return has_results(self.directory, EVER) and same_checkpoint(
            read_manifest(self.directory, EVER, self.flag), self.manifest
        )

    def _counts_map(self) -> np.ndarray:
        key = "pair_counts" if self.manifest["layout"] == TRIANGLE else "row_counts"
        return memmap_tensor(bundle_paths(self.directory, COUNTS)[0], key, self.flag)

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
        """Whether each pair ever fired together, from the 1-bit-per-pair file.

        If a run was stopped between writing the bits and the counts of a checkpoint, the bits
        are newer than the counts; then ``pair_counts > 0`` answers instead, so the two agree.
        """
        if not self.ever_is_current():
            return self.pair_counts(first_D, second_D) > 0
        words = memmap_tensor(bundle_paths(self.directory, EVER)[0], "bits", self.flag)
        low_D, high_D = torch.minimum(first_D, second_D), torch.maximum(first_D, second_D)
        index_D = pair_index(low_D.cpu(), high_D.cpu(), self.width)
        word_D = index_D // BITS_PER_WORD
        # Gather only the words holding the asked pairs, then read their bits in place.
        words_D = torch.from_numpy(np.asarray(words[word_D.numpy()], dtype=np.int64))
        return bits_at(
            words_D, torch.arange(index_D.shape[0]) * BITS_PER_WORD + index_D % BITS_PER_WORD
        )

    @property
    def top_k(self) -> int:
        """How many contexts per latent the run kept (0: none)."""
        return int(self.manifest.get("top_contexts") or 0)

    def top_tensors(self, latents: list[int] | None = None) -> TopContexts:
        """The kept contexts of ``latents`` (rows in that order), or of all latents."""
        path = bundle_paths(self.directory, COUNTS)[0]
        # Read from the file whose checksums were checked on open, only the rows asked for.
        with safe_open(str(path), framework="pt") as handle:
            if latents is None:
                return TopContexts.of({key: handle.get_tensor(key) for key in KEYS})
            return TopContexts.of(
                {key: torch.stack([handle.get_slice(key)[i] for i in latents]) for key in KEYS}
            )

    def top_contexts(self, latents: list[int]) -> dict[int, list[dict[str, Any]]]:
        """Each latent's kept contexts, best first: activation, prompt (index in the corpus, or in
        the merged runs' corpora one after another), position (BOS at 0) and the window's token
        texts with the index of the token itself (``focus``). Empty without kept contexts."""
        if not self.top_k or not latents:
            return {}
        vocabulary = read_vocabulary(self.directory, self.flag)
        top = self.top_tensors(latents)
        found: dict[int, list[dict[str, Any]]] = {}
        for row, latent in enumerate(latents):
            contexts = []
            for slot in range(top.k):
                if int(top.prompts_EK[row, slot]) == NONE:
                    continue
                window = top.tokens_EKZ[row, slot].tolist()
                kept = [i for i, t in enumerate(window) if t != NONE]
                contexts.append(
                    {
                        "activation": float(top.activations_EK[row, slot]),
                        "prompt": int(top.prompts_EK[row, slot]),
                        "position": int(top.positions_EK[row, slot]),
                        "tokens": [_text(vocabulary, window[i]) for i in kept],
                        "focus": kept.index(CONTEXT_BEFORE),
                    }
                )
            found[latent] = contexts
        return found

    def activation_histogram(self) -> Int[Tensor, "E D"] | None:
        """Each latent's non-zero activations in the bins of core/thresholds.py (D: bins), or None
        for a run counted before they were kept."""
        if HISTOGRAM not in self.manifest.get("tensors", {}):
            return None
        path = bundle_paths(self.directory, COUNTS)[0]
        return torch.from_numpy(np.array(memmap_tensor(path, HISTOGRAM, self.flag)))

    def token_bits(self) -> UInt8[Tensor, "E D"] | None:
        """Each latent's bitmap of the token ids it fired on (D: bits, core/distinct_tokens.py),
        or None for a run counted before they were kept."""
        if TOKEN_BITMAP not in self.manifest.get("tensors", {}):
            return None
        path = bundle_paths(self.directory, COUNTS)[0]
        return torch.from_numpy(np.array(memmap_tensor(path, TOKEN_BITMAP, self.flag)))

    def distinct_tokens(self) -> Float[Tensor, " E"] | None:
        """Each latent's estimated number of distinct tokens it fired on, or None (unknown) for a
        run counted before token bitmaps were kept."""
        bits_ED = self.token_bits()
        return None if bits_ED is None else distinct_tokens(bits_ED)

    def lookup(self) -> Callable[[Tensor, Tensor], Tensor]:
        """``(first_P, second_P) -> counts_P``, the pair search's co-occurrence lookup."""
        return self.pair_counts


def _text(vocabulary: list[str], token: int) -> str:
    return vocabulary[token] if 0 <= token < len(vocabulary) else f"<{token}>"


def load_cooccurrence(
    directory: Path, flag: str = "--cooccurrence-dir", allow_partial: bool = False
) -> CooccurrenceResults:
    """Open a finished run (firing counts in memory, pair counts memory-mapped on demand).

    ``allow_partial`` also opens a run stopped at a checkpoint (``results.complete`` is False):
    its counts, firing counts and bits are those of the same ``results.tokens`` tokens. Every
    tensor is checked against its checksum, and the counts against ``check_counts``.
    """
    if not has_results(directory):
        raise UserInputError(
            flag,
            f"'{directory}' has no {COUNTS}.safetensors; give a gemma_cooccurrences.py run directory",
        )
    manifest = read_manifest(directory, COUNTS, flag)
    if not manifest.get("complete", False) and not allow_partial:
        raise UserInputError(
            flag,
            f"'{directory}' holds an unfinished run ({manifest.get('tokens', 0):,} tokens so far); "
            "finish it with --resume",
        )
    if has_results(directory, EVER):
        ever_path = bundle_paths(directory, EVER)[0]
        verify_file(ever_path, read_manifest(directory, EVER, flag).get("tensors", {}), flag)
    firing_E = read_tensors(directory, COUNTS, ["firing_counts"], flag)["firing_counts"]
    if manifest.get("tokens") == 0:
        raise UserInputError(
            flag,
            f"'{directory}' counted no tokens (corpus empty, or every prompt cut to BOS by "
            "--max-tokens-in-prompt); count a corpus first",
        )
    return CooccurrenceResults(directory, manifest, firing_E, flag)


MERGE_KEYS = (
    "layout",
    "width",
    "rows",
    "model",
    "sae_release",
    "sae_id",
    "hook_name",
    "count_bos",
    "top_contexts",
    "context_window",
    "activation_histogram",
    TOKEN_BITMAP,
)


def open_mergeable(directories: list[Path], flag: str = "RUNS") -> list[CooccurrenceResults]:
    """Finished, distinct runs of the same model, SAE and layout, or a one-line error."""
    if len(directories) < 2:
        raise UserInputError(flag, "give at least two run directories to merge")
    seen: dict[Path, Path] = {}
    for directory in directories:
        if directory.resolve() in seen:
            raise UserInputError(
                flag,
                f"'{directory}' is the same run as '{seen[directory.resolve()]}'; give it once",
            )
        seen[directory.resolve()] = directory
    runs = [load_cooccurrence(d, flag=flag) for d in directories]
    first = runs[0].manifest
    for run in runs[1:]:
        if not same_firing(firing_rule(run.manifest), firing_rule(first)):
            raise UserInputError(
                flag,
                f"'{run.directory}' counted firing as {describe_firing(firing_rule(run.manifest))}, "
                f"'{runs[0].directory}' as {describe_firing(firing_rule(first))}; merge runs "
                "counted at the same thresholds",
            )
        for key in MERGE_KEYS:
            if run.manifest.get(key) != first.get(key):
                raise UserInputError(
                    flag,
                    f"'{run.directory}' has {key}={run.manifest.get(key)!r}, '{runs[0].directory}' has {first.get(key)!r}",
                )
    for run in runs:  # each run's bars file matches its counts (checksum), so a copy is right
        run_thresholds(run.directory, run.manifest, flag)
    return runs


def merge_results(directories: list[Path], output: Path, flag: str = "RUNS") -> dict[str, Any]:
    """Sum finished runs of the same model, SAE and layout into ``output`` (their top contexts
    merged); returns its manifest."""
    runs = open_mergeable(directories, flag)
    first = runs[0].manifest
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
    tensors = {key: total, "firing_counts": firing}
    if first.get("activation_histogram") is not None:
        histograms = [run.activation_histogram() for run in runs]
        tensors[HISTOGRAM] = torch.stack([h for h in histograms if h is not None]).sum(0)
    if first.get(TOKEN_BITMAP) is not None:
        bitmaps = [run.token_bits() for run in runs]
        tensors[TOKEN_BITMAP] = torch.stack([b for b in bitmaps if b is not None]).amax(0)
    if firing_rule(first)["rule"] == "per_latent":
        bars = (runs[0].directory / THRESHOLDS_FILE).read_text(encoding="utf-8")
        atomic_write_text(output / THRESHOLDS_FILE, bars)
    if runs[0].top_k:
        tensors.update(_merged_top(runs).tensors())
        write_vocabulary(output, read_vocabulary(runs[0].directory, flag))
    if first["layout"] == TRIANGLE:
        assert total.shape[0] == triangle_size(first["width"])
        save_ever_cooccurred(output, total, manifest)
    save_counts(output, tensors, manifest)
    return manifest


def _merged_top(runs: list[CooccurrenceResults]) -> TopContexts:
    """The runs' top contexts merged, prompts numbered as if their corpora were one after another."""
    merged, offset = None, 0
    for run in runs:
        top = run.top_tensors().offset_prompts(offset)
        merged = top if merged is None else merge_top(merged, top)
        offset += run.prompts
    assert merged is not None
    return merged
