"""Labelled data: scikit-learn's digits, Hugging Face presets (SST-2, AG News), local CSV/JSONL.

Every source becomes a train and a held-out split of examples (feature rows or texts) and integer
labels. Loading errors are one-line ``ConfigError``s, raised before a run directory exists.
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_hacking.config import ConfigError
from sae_hacking.saeception.config import SaeCeptionConfig


@dataclass(frozen=True)
class HubPreset:
    """A labelled Hugging Face dataset: where its text and labels are, which split is held out."""

    dataset_id: str
    text_field: str
    train_split: str
    test_split: str
    class_names: tuple[str, ...]


HUB_PRESETS = {
    # SST-2's own test split is unlabelled (every label -1), so its validation split is held out.
    "sst2": HubPreset(
        "stanfordnlp/sst2", "sentence", "train", "validation", ("negative", "positive")
    ),
    "ag_news": HubPreset(
        "fancyzhang/ag_news", "text", "train", "test", ("World", "Sports", "Business", "Sci/Tech")
    ),
}


@dataclass(frozen=True)
class LabelledSplit:
    """Examples (feature rows ``_BI`` or texts) and their integer labels, on the CPU."""

    examples: Float[Tensor, "B I"] | tuple[str, ...]
    labels_B: Int[Tensor, " B"]

    def __len__(self) -> int:
        return self.labels_B.shape[0]

    def take(self, idx_B: Int[Tensor, " B"]) -> Float[Tensor, "B I"] | list[str]:
        """The examples at ``idx_B``, in that order."""
        if isinstance(self.examples, Tensor):
            return self.examples[idx_B]
        return [self.examples[i] for i in idx_B.tolist()]


@dataclass(frozen=True)
class LabelledData:
    train: LabelledSplit
    test: LabelledSplit
    class_names: tuple[str, ...]
    description: str

    @property
    def classes(self) -> int:
        return len(self.class_names)


def _subset(split: LabelledSplit, limit: int | None, rng: np.random.Generator) -> LabelledSplit:
    """At most ``limit`` examples, drawn without replacement (all of them, in order, if fewer)."""
    if limit is None or limit >= len(split):
        return split
    idx = np.sort(rng.choice(len(split), size=limit, replace=False))
    idx_B = torch.from_numpy(idx)
    examples = split.take(idx_B)
    return LabelledSplit(
        examples if isinstance(examples, Tensor) else tuple(examples), split.labels_B[idx_B]
    )


def _held_out(whole: LabelledSplit, share: float, seed: int) -> tuple[LabelledSplit, LabelledSplit]:
    """A seeded random split into train and held-out examples."""
    order = np.random.default_rng(seed).permutation(len(whole))
    cut = max(1, round(share * len(order)))

    def part(idx: np.ndarray) -> LabelledSplit:
        idx_B = torch.from_numpy(np.sort(idx))
        taken = whole.take(idx_B)
        examples = taken if isinstance(taken, Tensor) else tuple(taken)
        return LabelledSplit(examples, whole.labels_B[idx_B])

    return part(order[cut:]), part(order[:cut])


@dataclass(frozen=True)
class LabelledSource:
    """A dataset as loaded: one labelled set split per seed, or fixed train and held-out splits."""

    splits: LabelledSplit | tuple[LabelledSplit, LabelledSplit]
    class_names: tuple[str, ...]
    description: str


def load_digits_source() -> LabelledSource:
    """scikit-learn's 1,797 bundled 8x8 digits, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    pixels, digits = load_digits(return_X_y=True)
    features_BI = torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 16.0)
    labels_B = torch.from_numpy(np.asarray(digits, dtype=np.int64))
    names = tuple(str(d) for d in range(10))
    return LabelledSource(LabelledSplit(features_BI, labels_B), names, "scikit-learn digits (8x8)")


def labels_from_values(
    values: list[object], field: str, source: str
) -> tuple[Tensor, tuple[str, ...]]:
    """Integer labels and class names: integers stay as they are, other values are numbered in sorted order."""
    if any(v is None or (isinstance(v, str) and not v.strip()) for v in values):
        raise ConfigError(field, f"'{source}' has examples without a label in '{field}'")
    texts = [str(v).strip() for v in values]
    if all(t.lstrip("-").isdigit() for t in texts):
        ints = [int(t) for t in texts]
        if min(ints) < 0:
            raise ConfigError(field, f"'{source}' has negative labels (unlabelled examples?)")
        names = tuple(str(i) for i in range(max(ints) + 1))
        return torch.tensor(ints, dtype=torch.int64), names
    names = tuple(sorted(set(texts)))
    index = {name: i for i, name in enumerate(names)}
    return torch.tensor([index[t] for t in texts], dtype=torch.int64), names


def _text(value: object, field: str, where: str) -> str:
    """A text value, never a null, number or list read as the text "None", "12" or "['a']"."""
    if not isinstance(value, str):
        shown = "null" if value is None else type(value).__name__
        raise ConfigError("text_field", f"{where}: '{field}' is {shown}, not text")
    return value


def _local_rows(path: Path, text_field: str, label_field: str) -> tuple[list[str], list[object]]:
    try:
        return _read_local_rows(path, text_field, label_field)
    except UnicodeDecodeError as error:
        raise ConfigError(
            "dataset", f"'{path}' is not UTF-8 text (byte {error.start}); convert it to UTF-8"
        ) from error
    except OSError as error:
        raise ConfigError("dataset", f"cannot read '{path}': {error.strerror}") from error


def _read_local_rows(
    path: Path, text_field: str, label_field: str
) -> tuple[list[str], list[object]]:
    texts: list[str] = []
    labels: list[object] = []
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            for flag, name in (("text_field", text_field), ("label_field", label_field)):
                if name not in columns:
                    raise ConfigError(
                        flag, f"'{path}' has no column '{name}' (columns: {', '.join(columns)})"
                    )
            for number, row in enumerate(reader, start=2):
                texts.append(_text(row[text_field], text_field, f"line {number} of '{path}'"))
                labels.append(row[label_field])
        return texts, labels
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConfigError(
                    "dataset", f"line {number} of '{path}' is not JSON ({error.msg})"
                ) from error
            for flag, name in (("text_field", text_field), ("label_field", label_field)):
                if not isinstance(record, dict) or name not in record:
                    raise ConfigError(flag, f"line {number} of '{path}' has no key '{name}'")
            texts.append(_text(record[text_field], text_field, f"line {number} of '{path}'"))
            labels.append(record[label_field])
    return texts, labels


def load_local_source(path: Path, text_field: str, label_field: str) -> LabelledSource:
    """A local CSV or JSONL file of text and label (split at random per seed)."""
    texts, values = _local_rows(path, text_field, label_field)
    if not texts:
        raise ConfigError("dataset", f"'{path}' holds no examples")
    labels_B, names = labels_from_values(values, "label_field", str(path))
    if len(set(labels_B.tolist())) < 2:
        raise ConfigError("dataset", f"'{path}' has fewer than two classes")
    return LabelledSource(LabelledSplit(tuple(texts), labels_B), names, str(path))


def _hub_split(preset: HubPreset, split: str) -> LabelledSplit:
    import datasets

    try:
        table = datasets.load_dataset(preset.dataset_id, split=split)
    except (OSError, ValueError, ConnectionError) as error:
        raise ConfigError(
            "dataset",
            f"cannot load '{preset.dataset_id}' ({type(error).__name__}); check the network and "
            "HF_DATASETS_OFFLINE, or give a local .csv/.jsonl file",
        ) from error
    assert isinstance(table, datasets.Dataset)
    if "label" not in table.column_names:
        raise ConfigError("dataset", f"'{preset.dataset_id}:{split}' has no label column")
    labels_B, _ = labels_from_values(
        list(table["label"]), "dataset", f"{preset.dataset_id}:{split}"
    )
    return LabelledSplit(tuple(str(t) for t in table[preset.text_field]), labels_B)


def load_hub_source(name: str) -> LabelledSource:
    preset = HUB_PRESETS[name]
    train = _hub_split(preset, preset.train_split)
    test = _hub_split(preset, preset.test_split)
    return LabelledSource((train, test), preset.class_names, preset.dataset_id)


def load_source(config: SaeCeptionConfig) -> LabelledSource:
    """The config's dataset, as loaded (one-line errors for missing files, fields or labels)."""
    if config.dataset == "digits":
        return load_digits_source()
    if config.dataset in HUB_PRESETS:
        return load_hub_source(config.dataset)
    return load_local_source(Path(config.dataset), config.text_field, config.label_field)


def split_for_seed(source: LabelledSource, config: SaeCeptionConfig, seed: int) -> LabelledData:
    """Train and held-out splits for one seed, cut to ``max_train_examples`` / ``max_test_examples``."""
    if isinstance(source.splits, LabelledSplit):
        train, test = _held_out(source.splits, config.test_share, seed)
    else:
        train, test = source.splits
    rng = np.random.default_rng(seed)
    train = _subset(train, config.max_train_examples, rng)
    test = _subset(test, config.max_test_examples, rng)
    for name, split in (("train", train), ("held-out", test)):
        if len(split) < 2:
            raise ConfigError("dataset", f"the {name} split has fewer than two examples")
    return LabelledData(train, test, source.class_names, source.description)
