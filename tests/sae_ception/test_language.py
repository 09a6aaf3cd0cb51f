"""The language-model path offline: the tiny model, a generated labelled set, a linear head."""

import json
import random
from pathlib import Path

import torch
from safetensors.torch import load_file

from sae_hacking.llm.models import tiny_model
from sae_hacking.saeception.classifiers import LanguageClassifier
from sae_hacking.saeception.config import SaeCeptionConfig
from sae_hacking.saeception.run import run

TOPICS = (
    ("snake", "stone", "garden", "sun", "wall", "grass"),
    ("train", "station", "ticket", "platform", "riders", "city"),
)


def labelled_jsonl(path: Path, rows: int = 48) -> Path:
    """Short texts whose label is the topic their words come from."""
    rng = random.Random(0)
    lines = []
    for i in range(rows):
        label = i % 2
        words = [rng.choice(TOPICS[label]) for _ in range(rng.randint(3, 7))]
        lines.append(json.dumps({"text": "The " + " ".join(words), "label": label}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_head_reads_the_last_real_token_whatever_the_padding() -> None:
    model = tiny_model()
    classifier = LanguageClassifier(
        model, "blocks.1.hook_resid_post", 2, torch.Generator().manual_seed(0), 32, 1
    )
    alone_BM, _ = classifier.forward_batch(["The snake slid"])
    padded_BM, _ = classifier.forward_batch(
        ["The snake slid", "The train to Oxford leaves at nine"]
    )
    torch.testing.assert_close(padded_BM[:1], alone_BM, atol=1e-5, rtol=1e-5)
    trained = set(classifier.trained_state())
    assert "head.weight" in trained and any(n.startswith("model.blocks.1.") for n in trained)
    assert not any(
        n.startswith(("model.blocks.0.", "model.blocks.2.", "model.embed")) for n in trained
    )


def test_a_tiny_model_runs_a_cycle_on_a_local_labelled_file(tmp_path: Path) -> None:
    config = SaeCeptionConfig(
        dataset=str(labelled_jsonl(tmp_path / "topics.jsonl")),
        model="tiny",
        layer="blocks.1.hook_resid_post",
        trained_blocks=1,
        max_tokens=16,
        cycles=1,
        strategies=("per-class", "random"),
        epochs=2,
        cycle_epochs=1,
        batch_size=8,
        lr=1e-3,
        sae_steps=20,
        sae_width=32,
        sae_k=4,
        device="cpu",
        output_dir=tmp_path / "out",
    )
    result = run(config, [])
    unit = result.run_dir / "seed-0" / "cycle-1" / "per-class"
    metrics = json.loads((unit / "metrics.json").read_text())
    assert 0.0 <= metrics["task_accuracy"] <= 1.0 and metrics["l0"] <= 4
    assert metrics["target_cosine_after"] > metrics["target_cosine_before"]
    saved = load_file(str(unit / "classifier.safetensors"))
    # Only the fine-tuned block and the head are saved, not the whole model.
    assert set(saved) >= {"head.weight", "head.bias"}
    assert all(n.startswith(("head.", "model.blocks.1.")) for n in saved)
