"""Bad input through the scripts themselves: every case is one line on the terminal naming its flag
or file, a non-zero status, no traceback, and nothing left behind (no run directory, no file of an
input changed).

Each case runs the script's typer app as a user's shell would (the arguments below, then
``--output-dir``). Inputs that take minutes to make (a co-occurrence run, an ablation run, a toy
training run) are made once for the module; a case copies what it damages into its own folder.
"""

import json
import shutil
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner

from sae_hacking.io.cooccurrence_results import read_manifest, read_tensors, save_counts
from tests.cooccurrence_setup import PROMPTS, write_corpus
from tests.test_bad_input_sweep import LATIN1, flip_byte, garble_header, truncate

OTHER_SAE = "blocks.1.hook_resid_post/jumprelu/128"
T = TypeVar("T")

TINY_ABLATION = (
    "--model",
    "tiny",
    "--device",
    "cpu",
    "--abridge-ablations-to",
    "4",
    "--max-tokens-in-prompt",
    "24",
    "--batch-size",
    "2",
    "--max-batch-ablations",
    "5",
    "--max-prompts",
    "4",
)
TINY_COOCCURRENCE = ("--model", "tiny", "--device", "cpu", "--max-tokens-in-prompt", "12")
TINY_TOY = (
    "--steps",
    "4",
    "--batch-size",
    "16",
    "--sae-hidden-dim",
    "8",
    "--k",
    "2",
    "--dataset-num-features",
    "3",
    "--model-dim",
    "8",
    "--eval-batch-size",
    "64",
    "--device",
    "cpu",
)
TINY_FIRST_LETTER = (
    "--model",
    "tiny",
    "--sae-release",
    "tiny",
    "--device",
    "cpu",
    "--max-words",
    "60",
)

# What each script is run with before a case's own arguments.
SCRIPTS: dict[str, tuple[str, ...]] = {
    "train_topk_sae_toy": TINY_TOY,
    "toy_hedging_absorption": ("--steps", "2", "--batch-size", "16", "--device", "cpu"),
    "toy_absorption_hunt": ("--steps", "2", "--batch-size", "16", "--device", "cpu"),
    "train_synthetic_sae": ("--device", "cpu"),
    "gemma_cooccurrences": TINY_COOCCURRENCE,
    "merge_cooccurrences": (),
    "gemma_selective_ablate": TINY_ABLATION,
    "look_for_pairs": ("--device", "cpu"),
    "prompt_server": ("--model", "tiny", "--device", "cpu"),
    "prompt_client": ("--prompt", "The snake", "--timeout", "5"),
    "first_letter_absorption": TINY_FIRST_LETTER,
    "sae_ception": ("--device", "cpu"),
}


class Lab:
    """Inputs made once for the module, each on first use: a corpus, finished runs of three tools,
    and unfinished ones to resume (a case copies what it damages)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.corpus = write_corpus(root / "corpus.txt", PROMPTS)

    @cached_property
    def cooccurrence(self) -> Path:
        """A finished gemma_cooccurrences run of the tiny ablator SAE."""
        from sae_hacking.cooccurrence.run import run
        from tests.cooccurrence_setup import config

        return run(config(self.corpus, self.root / "cooccurrence", max_prompts=6))

    @cached_property
    def other_cooccurrence(self) -> Path:
        """One of another SAE."""
        from sae_hacking.cooccurrence.run import run
        from tests.cooccurrence_setup import config

        return run(config(self.corpus, self.root / "other", max_prompts=2, sae_id=OTHER_SAE))

    @cached_property
    def partial_cooccurrence(self) -> Path:
        """The first run's counts marked unfinished, to --resume."""
        partial = self.root / "partial"
        shutil.copytree(self.cooccurrence, partial)
        unfinished(partial)
        return partial

    @cached_property
    def ablation(self) -> Path:
        """A finished gemma_selective_ablate run (its effects under effects/)."""
        from sae_hacking.ablation.config import SelectiveAblationConfig
        from sae_hacking.ablation.run import run

        return run(
            SelectiveAblationConfig(
                model="tiny",
                dataset_path=(self.corpus,),
                max_prompts=4,
                batch_size=2,
                max_tokens_in_prompt=24,
                abridge_ablations_to=4,
                max_batch_ablations=5,
                device="cpu",
                output_dir=self.root / "ablation",
            )
        )

    @cached_property
    def toy(self) -> Path:
        """A train_topk_sae_toy run stopped after its checkpoints."""
        out = self.root / "toy"
        args = [*TINY_TOY, "--log-every", "2", "--checkpoint-every", "2", "--output-dir", str(out)]
        code, output, _ = invoke("train_topk_sae_toy", args)
        assert code == 0, f"making a toy run failed: {output}"
        (run_dir,) = list(out.iterdir())
        (run_dir / "summary.json").unlink()  # as if stopped after its checkpoints
        return run_dir


def invoke(script: str, args: list[str]) -> tuple[int, str, BaseException | None]:
    import importlib

    app = importlib.import_module(f"sae_hacking.{script}").app
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output, result.exception


def unfinished(run_dir: Path) -> None:
    """Rewrite a finished co-occurrence run's counts as an unfinished checkpoint."""
    tensors = read_tensors(run_dir)
    manifest = {k: v for k, v in read_manifest(run_dir).items() if k not in ("format", "tensors")}
    manifest["complete"] = False
    for name in ("ever_cooccurred.safetensors", "ever_cooccurred.json"):
        (run_dir / name).unlink()
    save_counts(run_dir, tensors, manifest)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab(tmp_path_factory.mktemp("lab"))


# Preparations: each makes one input of a case inside the case's folder.

Prepare = Callable[[Lab, Path], object]


def write(name: str, content: bytes) -> Prepare:
    def prepare(lab: Lab, tmp: Path) -> None:
        (tmp / name).write_bytes(content)

    return prepare


def copy(which: str, name: str, damage: Callable[[Path], object] | None = None) -> Prepare:
    """A copy of one of the lab's runs at ``tmp/name``, damaged by ``damage(copy)``."""

    def prepare(lab: Lab, tmp: Path) -> None:
        shutil.copytree(getattr(lab, which), tmp / name)
        if damage is not None:
            damage(tmp / name)

    return prepare


def folder(name: str) -> Prepare:
    def prepare(lab: Lab, tmp: Path) -> None:
        (tmp / name).mkdir()

    return prepare


def jsonl(*lines: bytes) -> bytes:
    return b"\n".join(lines) + b"\n"


def flip_counts(run_dir: Path) -> None:
    flip_byte(run_dir / "counts.safetensors", 3)


def truncate_counts(run_dir: Path) -> None:
    truncate(run_dir / "counts.safetensors")


def garble_counts(run_dir: Path) -> None:
    garble_header(run_dir / "counts.safetensors")


def garble_config(run_dir: Path) -> None:
    (run_dir / "config.json").write_text('{"config": {"model": ', encoding="utf-8")


def zero_tokens(run_dir: Path) -> None:
    tensors = read_tensors(run_dir)
    manifest = {k: v for k, v in read_manifest(run_dir).items() if k not in ("format", "tensors")}
    for tensor in tensors.values():
        tensor.zero_()
    manifest["tokens"] = 0
    for name in ("ever_cooccurred.safetensors", "ever_cooccurred.json"):
        (run_dir / name).unlink(missing_ok=True)
    save_counts(run_dir, tensors, manifest)


def first_shard(run_dir: Path) -> Path:
    return sorted((run_dir / "effects").glob("effects-*.safetensors"))[0]


def flip_shard(run_dir: Path) -> None:
    flip_byte(first_shard(run_dir), 12)


def truncate_shard(run_dir: Path) -> None:
    truncate(first_shard(run_dir))


def drop_shard(run_dir: Path) -> None:
    first_shard(run_dir).unlink()


def truncate_effects_manifest(run_dir: Path) -> None:
    truncate(run_dir / "effects" / "effects.json", 0.5)


def garble_progress(run_dir: Path) -> None:
    (run_dir / "partial" / "rank-0" / "effects.json").write_text('{"shards": [', encoding="utf-8")


def toy_checkpoint(run_dir: Path) -> Path:
    from sae_hacking.toy.training.run_log import latest_checkpoint

    manifest = latest_checkpoint(run_dir)
    assert manifest is not None
    return manifest.with_suffix(".safetensors")


def flip_toy_checkpoint(run_dir: Path) -> None:
    flip_byte(toy_checkpoint(run_dir), 5)


def truncate_toy_checkpoint(run_dir: Path) -> None:
    truncate(toy_checkpoint(run_dir))


@dataclass(frozen=True)
class Case:
    """One bad input of one script: its arguments (``{tmp}`` is the case's folder, ``{corpus}`` the
    lab's corpus), what to make first, and the flag or file its one line must name.

    ``issue`` names the bad input of the issue this case tries (see ISSUE_CASES)."""

    script: str
    name: str
    args: tuple[str, ...]
    names: str
    issue: str
    prepare: tuple[Prepare, ...] = ()
    fragment: str = ""
    base: bool = True  # run with the script's arguments of SCRIPTS first
    # Lines the tool prints before it can know (the server says it loads the model, then the SAE).
    status_lines: int = 0

    @property
    def id(self) -> str:
        return f"{self.script}:{self.name}"


# The issue's bad inputs, by kind (the sweep tries each on every script it reaches).
ISSUE_CASES = {
    "corpus-not-utf8": "corpus files that are not UTF-8 (.jsonl and .txt)",
    "corpus-malformed": "a malformed .jsonl line; lines that are a JSON string or number",
    "corpus-text-not-a-string": '{"text": null} or {"text": [...]} counted as a prompt',
    "corpus-empty": "an empty corpus gives a complete run of 0 prompts",
    "no-tokens": "--max-tokens-in-prompt 1 counts 0 tokens; a consumer fed a 0-token run",
    "damaged-counts": "a flipped, truncated or garbled counts.safetensors / counts.json",
    "damaged-effects": "a flipped, truncated or missing effect shard, a garbled effects.json",
    "damaged-config": "a truncated or garbled config.json reached through --resume",
    "resume-other-tool": "--resume given a run of another tool (KeyError: 'selected_features')",
    "resume-new-flags": "--resume DIR with flags that contradict the run (ignored without a word)",
    "sae-width": "a zero-width SAE (jumprelu/0), an enormous one (1e13)",
    "sae-release-path": "--sae-release ../../etc/passwd",
    "output-dir": "an output directory that cannot be written (or is a file)",
    "sizes": "--sae-hidden-dim 1e12, --batch-size 1e14, a tree spec with repeat 1e12, 1e18 samples",
    "not-a-prompt-server": "prompt_client against a server that is not a prompt server",
    "missing-input": "an input file or run directory that is not there, or not of this tool",
    "flag-values": "values no run can use (negative, zero, unknown names, contradictions)",
}

UNWRITABLE = "/sys"  # refuses new entries even to root, like a read-only mount


def corpus_cases(script: str) -> list[Case]:
    """The corpus cases, for each script that reads a corpus with --dataset-path."""
    bad_files = [
        ("txt-not-utf8", "c.txt", LATIN1, "corpus-not-utf8", "not UTF-8"),
        (
            "jsonl-not-utf8",
            "c.jsonl",
            b'{"text": "' + LATIN1.strip() + b'"}\n',
            "corpus-not-utf8",
            "not UTF-8",
        ),
        (
            "jsonl-malformed",
            "c.jsonl",
            jsonl(b'{"text": "a"}', b'{"text": "b"'),
            "corpus-malformed",
            "line 2",
        ),
        ("jsonl-string-line", "c.jsonl", jsonl(b'"just a string"'), "corpus-malformed", "line 1"),
        ("jsonl-number-line", "c.jsonl", jsonl(b"3"), "corpus-malformed", "line 1"),
        ("jsonl-list-line", "c.jsonl", jsonl(b'["a", "b"]'), "corpus-malformed", "line 1"),
        (
            "jsonl-text-null",
            "c.jsonl",
            jsonl(b'{"text": "a b c"}', b'{"text": null}'),
            "corpus-text-not-a-string",
            "line 2",
        ),
        (
            "jsonl-text-list",
            "c.jsonl",
            jsonl(b'{"text": ["a", "b"]}'),
            "corpus-text-not-a-string",
            "line 1",
        ),
        (
            "jsonl-text-number",
            "c.jsonl",
            jsonl(b'{"text": 12}'),
            "corpus-text-not-a-string",
            "line 1",
        ),
        (
            "jsonl-no-text-field",
            "c.jsonl",
            jsonl(b'{"body": "a b c"}'),
            "corpus-text-not-a-string",
            "text",
        ),
        ("txt-empty", "c.txt", b"\n  \n\n", "corpus-empty", "no text"),
        ("jsonl-empty", "c.jsonl", b"", "corpus-empty", "no text"),
    ]
    cases = [
        Case(
            script,
            name,
            ("--dataset-path", f"{{tmp}}/{file}"),
            "--dataset-path" if issue != "corpus-text-not-a-string" else "--text-field",
            issue,
            (write(file, content),),
            fragment,
        )
        for name, file, content, issue, fragment in bad_files
    ]
    cases.append(
        Case(
            script,
            "corpus-missing",
            ("--dataset-path", "{tmp}/nowhere.txt"),
            "--dataset-path",
            "missing-input",
        )
    )
    cases.append(
        Case(
            script,
            "corpus-a-directory",
            ("--dataset-path", "{tmp}"),
            "--dataset-path",
            "missing-input",
        )
    )
    return cases


def lm_sae_cases(script: str, flag: str, corpus: bool = True, status_lines: int = 0) -> list[Case]:
    """Unusable SAE names, for the scripts that load a language model's SAE."""
    given = ("--dataset-path", "{corpus}") if corpus else ()
    release = flag.replace("-id", "-release")
    cases = [
        ("sae-zero-width", "tiny", "blocks.3.hook_resid_post/jumprelu/0", flag, "sae-width"),
        (
            "sae-enormous-width",
            "tiny",
            "blocks.3.hook_resid_post/jumprelu/10000000000000",
            flag,
            "sae-width",
        ),
        ("sae-release-a-path", "../../etc/passwd", "x", release, "sae-release-path"),
    ]
    return [
        Case(
            script,
            name,
            (*given, release, release_name, flag, sae_id),
            names,
            issue,
            status_lines=status_lines,
        )
        for name, release_name, sae_id, names, issue in cases
    ]


def output_dir_cases(script: str, *args: str, inputs: tuple[Prepare, ...] = ()) -> list[Case]:
    return [
        Case(
            script,
            "output-dir-a-file",
            (*args, "--output-dir", "{tmp}/file"),
            "--output-dir",
            "output-dir",
            (*inputs, write("file", b"x")),
        ),
        Case(
            script,
            "output-dir-unwritable",
            (*args, "--output-dir", UNWRITABLE),
            "--output-dir",
            "output-dir",
            inputs,
        ),
    ]


def resume_cases(script: str, own: str | None, *args: str) -> list[Case]:
    """--resume given something that is not a run of this tool (``own``: the lab's run of it)."""
    cases = [
        Case(
            script,
            "resume-missing",
            (*args, "--resume", "{tmp}/nowhere"),
            "--resume",
            "missing-input",
        ),
        Case(
            script,
            "resume-empty-dir",
            (*args, "--resume", "{tmp}/empty"),
            "--resume",
            "missing-input",
            (folder("empty"),),
        ),
        Case(
            script,
            "resume-config-garbled",
            (*args, "--resume", "{tmp}/run"),
            "--resume",
            "damaged-config",
            (copy(own or "toy", "run", garble_config),),
        ),
    ]
    for other in ("cooccurrence", "ablation", "toy"):
        if other != own and not (own or "").endswith(other):
            cases.append(
                Case(
                    script,
                    f"resume-a-{other}-run",
                    (*args, "--resume", "{tmp}/run"),
                    "--resume",
                    "resume-other-tool",
                    (copy(other, "run"),),
                )
            )
    return cases


def counts_input_cases(script: str, *args: str, inputs: tuple[Prepare, ...] = ()) -> list[Case]:
    """A --cooccurrence-dir that is damaged, counted nothing, is of another SAE or another tool."""
    given = [
        ("flipped", "cooccurrence", flip_counts, "damaged-counts", "checksum"),
        ("truncated", "cooccurrence", truncate_counts, "damaged-counts", "counts.safetensors"),
        ("no-tokens", "cooccurrence", zero_tokens, "no-tokens", "no tokens"),
        ("other-sae", "other_cooccurrence", None, "missing-input", ""),
        ("an-ablation-run", "ablation", None, "resume-other-tool", ""),
    ]
    return [
        Case(
            script,
            f"cooccurrence-dir-{name}",
            (*args, "--cooccurrence-dir", "{tmp}/run"),
            "--cooccurrence-dir",
            issue,
            (*inputs, copy(which, "run", damage)),
            fragment,
        )
        for name, which, damage, issue, fragment in given
    ]


def huge_spec() -> bytes:
    return json.dumps({"roots": [{"p": 0.1, "repeat": 1e12, "children": [{"p": 0.5}]}]}).encode()


CASES: list[Case] = [
    # train_topk_sae_toy
    Case(
        "train_topk_sae_toy",
        "hidden-dim-huge",
        ("--sae-hidden-dim", "1000000000000"),
        "--sae-hidden-dim",
        "sizes",
    ),
    Case(
        "train_topk_sae_toy",
        "batch-size-huge",
        ("--batch-size", "100000000000000"),
        "--batch-size",
        "sizes",
    ),
    Case(
        "train_topk_sae_toy",
        "hidden-dim-1e12",
        ("--sae-hidden-dim", "1e12"),
        "--sae-hidden-dim",
        "sizes",
    ),
    Case(
        "train_topk_sae_toy",
        "num-samples-1e18",
        ("--num-samples", "1000000000000000000", "--device", "cpu"),
        "--num-samples",
        "sizes",
        base=False,
    ),
    Case("train_topk_sae_toy", "steps-zero", ("--steps", "0"), "--steps", "flag-values"),
    Case("train_topk_sae_toy", "k-above-width", ("--k", "9"), "--k", "flag-values"),
    Case("train_topk_sae_toy", "lr-negative", ("--lr", "-1"), "--lr", "flag-values"),
    Case("train_topk_sae_toy", "decay-unknown", ("--decay", "exp"), "--decay", "flag-values"),
    Case(
        "train_topk_sae_toy", "unknown-flag", ("--hidden-dim", "8"), "--hidden-dim", "flag-values"
    ),
    Case("train_topk_sae_toy", "device-unknown", ("--device", "tpu"), "--device", "flag-values"),
    *output_dir_cases("train_topk_sae_toy"),
    *resume_cases("train_topk_sae_toy", "toy"),
    Case(
        "train_topk_sae_toy",
        "resume-checkpoint-flipped",
        ("--resume", "{tmp}/run"),
        "--resume",
        "damaged-counts",
        (copy("toy", "run", flip_toy_checkpoint),),
        "checksum",
    ),
    Case(
        "train_topk_sae_toy",
        "resume-checkpoint-truncated",
        ("--resume", "{tmp}/run"),
        "--resume",
        "damaged-counts",
        (copy("toy", "run", truncate_toy_checkpoint),),
    ),
    Case(
        "train_topk_sae_toy",
        "resume-contradicting-flag",
        ("--resume", "{tmp}/run", "--model-dim", "9"),
        "--model-dim",
        "resume-new-flags",
        (copy("toy", "run"),),
    ),
    # toy_hedging_absorption
    Case(
        "toy_hedging_absorption",
        "tree-repeat-1e12",
        ("--hierarchy", "{tmp}/tree.json"),
        "--hierarchy",
        "sizes",
        (write("tree.json", huge_spec()),),
    ),
    Case(
        "toy_hedging_absorption",
        "tree-not-json",
        ("--hierarchy", "{tmp}/tree.json"),
        "--hierarchy",
        "missing-input",
        (write("tree.json", b"{roots"),),
    ),
    Case(
        "toy_hedging_absorption",
        "tree-not-utf8",
        ("--hierarchy", "{tmp}/tree.json"),
        "--hierarchy",
        "corpus-not-utf8",
        (write("tree.json", LATIN1),),
    ),
    Case(
        "toy_hedging_absorption",
        "tree-missing",
        ("--hierarchy", "{tmp}/tree.json"),
        "--hierarchy",
        "missing-input",
    ),
    Case(
        "toy_hedging_absorption",
        "model-dim-huge",
        ("--model-dim", "1000000000000"),
        "--model-dim",
        "sizes",
    ),
    Case(
        "toy_hedging_absorption",
        "batch-size-huge",
        ("--batch-size", "100000000000000"),
        "--batch-size",
        "sizes",
    ),
    Case(
        "toy_hedging_absorption",
        "sparsity-unknown",
        ("--sparsity", "l0"),
        "--sparsity",
        "flag-values",
    ),
    Case(
        "toy_hedging_absorption",
        "multiplier-negative",
        ("--inner-multipliers", "-0.1"),
        "--inner-multipliers",
        "flag-values",
    ),
    *output_dir_cases("toy_hedging_absorption"),
    # toy_absorption_hunt
    Case(
        "toy_absorption_hunt",
        "tree-repeat-1e12",
        ("--hierarchy", "{tmp}/tree.json"),
        "--hierarchy",
        "sizes",
        (write("tree.json", huge_spec()),),
    ),
    Case(
        "toy_absorption_hunt",
        "tree-not-json",
        ("--hierarchy", "{tmp}/tree.json"),
        "--hierarchy",
        "missing-input",
        (write("tree.json", b"[1, 2"),),
    ),
    Case(
        "toy_absorption_hunt",
        "tree-missing",
        ("--hierarchy", "{tmp}/none.json"),
        "--hierarchy",
        "missing-input",
    ),
    Case(
        "toy_absorption_hunt",
        "ablator-width-huge",
        ("--ablator-width", "1000000000000"),
        "--ablator-width",
        "sizes",
    ),
    Case(
        "toy_absorption_hunt",
        "samples-1e18",
        ("--samples", "1000000000000000000"),
        "--samples",
        "sizes",
    ),
    Case(
        "toy_absorption_hunt",
        "batch-size-huge",
        ("--batch-size", "100000000000000"),
        "--batch-size",
        "sizes",
    ),
    Case(
        "toy_absorption_hunt",
        "reader-k-above-width",
        ("--reader", "sae", "--reader-k", "300"),
        "--reader-k",
        "flag-values",
    ),
    *output_dir_cases("toy_absorption_hunt"),
    # train_synthetic_sae
    Case(
        "train_synthetic_sae",
        "model-unknown",
        ("--model", "no-such-model"),
        "--model",
        "missing-input",
    ),
    Case(
        "train_synthetic_sae",
        "model-file-garbled",
        ("--model", "{tmp}/model.json"),
        "--model",
        "missing-input",
        (write("model.json", b'{"num_features": '),),
    ),
    Case(
        "train_synthetic_sae",
        "width-huge",
        ("--width", "1000000000000"),
        "--width",
        "sizes",
        status_lines=1,  # sae-lens's progress bar while it builds the model, whose width it needs
    ),
    Case(
        "train_synthetic_sae",
        "batch-size-huge",
        ("--batch-size", "100000000000000"),
        "--batch-size",
        "sizes",
    ),
    Case(
        "train_synthetic_sae",
        "samples-1e18",
        ("--samples", "1000000000000000000"),
        "--samples",
        "sizes",
    ),
    Case(
        "train_synthetic_sae",
        "architecture-unknown",
        ("--architecture", "relu"),
        "--architecture",
        "flag-values",
    ),
    *output_dir_cases("train_synthetic_sae"),
    # gemma_cooccurrences
    *corpus_cases("gemma_cooccurrences"),
    Case(
        "gemma_cooccurrences",
        "one-token-prompts",
        ("--dataset-path", "{corpus}", "--max-tokens-in-prompt", "1"),
        "--max-tokens-in-prompt",
        "no-tokens",
    ),
    *lm_sae_cases("gemma_cooccurrences", "--sae-id"),
    Case(
        "gemma_cooccurrences",
        "batch-size-huge",
        ("--dataset-path", "{corpus}", "--batch-size", "100000000000000"),
        "--batch-size",
        "sizes",
    ),
    *output_dir_cases("gemma_cooccurrences", "--dataset-path", "{corpus}"),
    *resume_cases("gemma_cooccurrences", "partial_cooccurrence", "--dataset-path", "{corpus}"),
    Case(
        "gemma_cooccurrences",
        "resume-counts-flipped",
        ("--dataset-path", "{corpus}", "--resume", "{tmp}/run"),
        "--resume",
        "damaged-counts",
        (copy("partial_cooccurrence", "run", flip_counts),),
        "checksum",
    ),
    Case(
        "gemma_cooccurrences",
        "resume-counts-truncated",
        ("--dataset-path", "{corpus}", "--resume", "{tmp}/run"),
        "--resume",
        "damaged-counts",
        (copy("partial_cooccurrence", "run", truncate_counts),),
    ),
    Case(
        "gemma_cooccurrences",
        "resume-counts-garbled",
        ("--dataset-path", "{corpus}", "--resume", "{tmp}/run"),
        "--resume",
        "damaged-counts",
        (copy("partial_cooccurrence", "run", garble_counts),),
    ),
    Case(
        "gemma_cooccurrences",
        "resume-complete-run",
        ("--dataset-path", "{corpus}", "--resume", "{tmp}/run"),
        "--resume",
        "missing-input",
        (copy("cooccurrence", "run"),),
    ),
    Case(
        "gemma_cooccurrences",
        "resume-contradicting-flag",
        ("--dataset-path", "{corpus}", "--resume", "{tmp}/run", "--batch-size", "3"),
        "--batch-size",
        "resume-new-flags",
        (copy("partial_cooccurrence", "run"),),
    ),
    # merge_cooccurrences
    Case(
        "merge_cooccurrences",
        "counts-flipped",
        ("{tmp}/a", "{tmp}/b"),
        "RUNS",
        "damaged-counts",
        (copy("cooccurrence", "a"), copy("cooccurrence", "b", flip_counts)),
        "checksum",
    ),
    Case(
        "merge_cooccurrences",
        "counts-truncated",
        ("{tmp}/a", "{tmp}/b"),
        "RUNS",
        "damaged-counts",
        (copy("cooccurrence", "a"), copy("cooccurrence", "b", truncate_counts)),
    ),
    Case(
        "merge_cooccurrences",
        "counts-garbled",
        ("{tmp}/a", "{tmp}/b"),
        "RUNS",
        "damaged-counts",
        (copy("cooccurrence", "a"), copy("cooccurrence", "b", garble_counts)),
    ),
    Case(
        "merge_cooccurrences",
        "no-tokens",
        ("{tmp}/a", "{tmp}/b"),
        "RUNS",
        "no-tokens",
        (copy("cooccurrence", "a"), copy("cooccurrence", "b", zero_tokens)),
    ),
    Case(
        "merge_cooccurrences",
        "unfinished-run",
        ("{tmp}/a", "{tmp}/b"),
        "RUNS",
        "missing-input",
        (copy("cooccurrence", "a"), copy("partial_cooccurrence", "b")),
    ),
    Case(
        "merge_cooccurrences",
        "an-ablation-run",
        ("{tmp}/a", "{tmp}/b"),
        "RUNS",
        "resume-other-tool",
        (copy("cooccurrence", "a"), copy("ablation", "b")),
    ),
    Case(
        "merge_cooccurrences",
        "missing-run",
        ("{tmp}/a", "{tmp}/nowhere"),
        "RUNS",
        "missing-input",
        (copy("cooccurrence", "a"),),
    ),
    Case("merge_cooccurrences", "no-runs", (), "RUNS", "missing-input"),
    *output_dir_cases(
        "merge_cooccurrences",
        "{tmp}/a",
        "{tmp}/b",
        inputs=(copy("cooccurrence", "a"), copy("cooccurrence", "b")),
    ),
    # gemma_selective_ablate
    *corpus_cases("gemma_selective_ablate"),
    Case(
        "gemma_selective_ablate",
        "one-token-prompts",
        ("--dataset-path", "{corpus}", "--max-tokens-in-prompt", "1"),
        "--max-tokens-in-prompt",
        "no-tokens",
    ),
    *lm_sae_cases("gemma_selective_ablate", "--ablator-sae-id"),
    Case(
        "gemma_selective_ablate",
        "selected-feature-out-of-range",
        ("--dataset-path", "{corpus}", "--selected-features", "512"),
        "--selected-features",
        "flag-values",
    ),
    Case(
        "gemma_selective_ablate",
        "abridge-above-width",
        ("--dataset-path", "{corpus}", "--abridge-ablations-to", "513"),
        "--abridge-ablations-to",
        "flag-values",
    ),
    Case(
        "gemma_selective_ablate",
        "threshold-without-counts",
        ("--dataset-path", "{corpus}", "--exclude-latent-threshold", "0.5"),
        "--exclude-latent-threshold",
        "flag-values",
    ),
    *counts_input_cases(
        "gemma_selective_ablate",
        "--dataset-path",
        "{corpus}",
        "--exclude-latent-threshold",
        "0.5",
    ),
    *output_dir_cases("gemma_selective_ablate", "--dataset-path", "{corpus}"),
    *resume_cases("gemma_selective_ablate", "ablation", "--dataset-path", "{corpus}"),
    Case(
        "gemma_selective_ablate",
        "resume-more-prompts",
        ("--resume", "{tmp}/run", "--max-prompts", "200"),
        "--max-prompts",
        "resume-new-flags",
        (copy("ablation", "run"),),
    ),
    Case(
        "gemma_selective_ablate",
        "resume-other-k",
        ("--resume", "{tmp}/run", "--abridge-ablations-to", "5"),
        "--abridge-ablations-to",
        "resume-new-flags",
        (copy("ablation", "run"),),
    ),
    Case(
        "gemma_selective_ablate",
        "resume-progress-garbled",
        ("--resume", "{tmp}/run"),
        "--resume",
        "damaged-effects",
        (copy("ablation", "run", garble_progress),),
        "effects.json",
    ),
    # look_for_pairs
    Case("look_for_pairs", "no-ablation-dir", (), "--ablation-dir", "missing-input"),
    Case(
        "look_for_pairs",
        "ablation-dir-missing",
        ("--ablation-dir", "{tmp}/nowhere"),
        "--ablation-dir",
        "missing-input",
    ),
    Case(
        "look_for_pairs",
        "ablation-dir-empty",
        ("--ablation-dir", "{tmp}/empty"),
        "--ablation-dir",
        "missing-input",
        (folder("empty"),),
    ),
    Case(
        "look_for_pairs",
        "ablation-dir-a-cooccurrence-run",
        ("--ablation-dir", "{tmp}/run"),
        "--ablation-dir",
        "resume-other-tool",
        (copy("cooccurrence", "run"),),
    ),
    Case(
        "look_for_pairs",
        "shard-flipped",
        ("--ablation-dir", "{tmp}/run"),
        "--ablation-dir",
        "damaged-effects",
        (copy("ablation", "run", flip_shard),),
        "checksum",
    ),
    Case(
        "look_for_pairs",
        "shard-truncated",
        ("--ablation-dir", "{tmp}/run"),
        "--ablation-dir",
        "damaged-effects",
        (copy("ablation", "run", truncate_shard),),
    ),
    Case(
        "look_for_pairs",
        "shard-missing",
        ("--ablation-dir", "{tmp}/run"),
        "--ablation-dir",
        "damaged-effects",
        (copy("ablation", "run", drop_shard),),
    ),
    Case(
        "look_for_pairs",
        "effects-json-truncated",
        ("--ablation-dir", "{tmp}/run"),
        "--ablation-dir",
        "damaged-effects",
        (copy("ablation", "run", truncate_effects_manifest),),
    ),
    *counts_input_cases(
        "look_for_pairs", "--ablation-dir", "{tmp}/abl", inputs=(copy("ablation", "abl"),)
    ),
    Case(
        "look_for_pairs",
        "ranked-without-counts",
        ("--ablation-dir", "{tmp}/abl", "--scoring", "ranked"),
        "--scoring",
        "flag-values",
        (copy("ablation", "abl"),),
    ),
    Case(
        "look_for_pairs",
        "cosine-above-one",
        ("--ablation-dir", "{tmp}/abl", "--cosine-sim-threshold", "2"),
        "--cosine-sim-threshold",
        "flag-values",
        (copy("ablation", "abl"),),
    ),
    *output_dir_cases(
        "look_for_pairs", "--ablation-dir", "{tmp}/abl", inputs=(copy("ablation", "abl"),)
    ),
    # prompt_server (a case that got as far as serving would fail the test, not hang it)
    *lm_sae_cases("prompt_server", "--sae-id", corpus=False, status_lines=2),
    Case("prompt_server", "host-not-loopback", ("--host", "0.0.0.0"), "--host", "flag-values"),
    Case("prompt_server", "port-zero", ("--port", "0"), "--port", "flag-values"),
    Case(
        "prompt_server", "model-unknown", ("--model", "no-such-model"), "--model", "missing-input"
    ),
    # prompt_client
    Case(
        "prompt_client",
        "server-down",
        ("--server-url", "http://127.0.0.1:9"),
        "--server-url",
        "not-a-prompt-server",
    ),
    Case(
        "prompt_client",
        "server-url-not-http",
        ("--server-url", "ftp://x"),
        "--server-url",
        "flag-values",
    ),
    Case("prompt_client", "prompt-empty", ("--prompt", ""), "--prompt", "flag-values"),
    Case("prompt_client", "top-k-zero", ("--top-k", "0"), "--top-k", "flag-values"),
    # first_letter_absorption
    Case(
        "first_letter_absorption",
        "sae-zero-width",
        ("--sae-ids", "blocks.3.hook_resid_post/jumprelu/0"),
        "--sae-ids",
        "sae-width",
    ),
    Case(
        "first_letter_absorption",
        "sae-enormous-width",
        ("--sae-ids", "blocks.3.hook_resid_post/jumprelu/10000000000000"),
        "--sae-ids",
        "sae-width",
    ),
    Case(
        "first_letter_absorption",
        "sae-release-a-path",
        ("--sae-release", "../../etc/passwd", "--sae-ids", "x"),
        "--sae-release",
        "sae-release-path",
    ),
    Case(
        "first_letter_absorption",
        "template-without-word",
        ("--prompt-template", "no slot"),
        "--prompt-template",
        "flag-values",
    ),
    Case(
        "first_letter_absorption",
        "train-fraction-above-one",
        ("--train-fraction", "2"),
        "--train-fraction",
        "flag-values",
    ),
    Case(
        "first_letter_absorption",
        "model-unknown",
        ("--model", "no-such-model"),
        "--model",
        "missing-input",
    ),
    *output_dir_cases("first_letter_absorption"),
    # sae_ception
    Case(
        "sae_ception",
        "local-not-utf8",
        ("--dataset", "{tmp}/d.jsonl", "--model", "tiny"),
        "--dataset",
        "corpus-not-utf8",
        (write("d.jsonl", b'{"text": "' + LATIN1.strip() + b'", "label": 1}\n'),),
    ),
    Case(
        "sae_ception",
        "local-malformed",
        ("--dataset", "{tmp}/d.jsonl", "--model", "tiny"),
        "--dataset",
        "corpus-malformed",
        (write("d.jsonl", jsonl(b'{"text": "a", "label": 1}', b'{"text"')),),
    ),
    Case(
        "sae_ception",
        "local-text-null",
        ("--dataset", "{tmp}/d.jsonl", "--model", "tiny"),
        "--text-field",
        "corpus-text-not-a-string",
        (write("d.jsonl", jsonl(b'{"text": "a", "label": 1}', b'{"text": null, "label": 0}')),),
    ),
    Case(
        "sae_ception",
        "local-empty",
        ("--dataset", "{tmp}/d.jsonl", "--model", "tiny"),
        "--dataset",
        "corpus-empty",
        (write("d.jsonl", b""),),
    ),
    Case(
        "sae_ception",
        "local-missing",
        ("--dataset", "{tmp}/none.jsonl", "--model", "tiny"),
        "--dataset",
        "missing-input",
    ),
    Case("sae_ception", "sae-width-huge", ("--sae-width", "1000000000000"), "--sae-width", "sizes"),
    Case("sae_ception", "layer-unknown", ("--layer", "7"), "--layer", "flag-values"),
    *output_dir_cases("sae_ception"),
    *resume_cases("sae_ception", None),
]


# A case runs far longer only when its input was not refused and the tool went to work.
CASE_SECONDS = 60


class RanOn(Exception):
    """The script was still working when a bad input should have stopped it."""


def within(seconds: int, call: Callable[[], T]) -> T:
    """``call()``, interrupted by RanOn after ``seconds`` (the sweep must not hang on a miss)."""

    def interrupt(signum: int, frame: object) -> None:
        raise RanOn(f"still running after {seconds} s: the bad input was accepted")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    try:
        return call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size, and every folder (size -1)."""
    return {
        str(path.relative_to(root)): path.stat().st_size if path.is_file() else -1
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import uvicorn

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server got as far as serving")

    monkeypatch.setattr(uvicorn, "run", refuse)
    yield


# The default tier: every script and every kind of bad input at least once, chosen cheap; the
# rest of the table runs with -m slow.
DEFAULT_TIER = frozenset(
    {
        "train_topk_sae_toy:hidden-dim-huge",
        "train_topk_sae_toy:hidden-dim-1e12",
        "train_topk_sae_toy:unknown-flag",
        "train_topk_sae_toy:num-samples-1e18",
        "train_topk_sae_toy:resume-a-cooccurrence-run",
        "toy_hedging_absorption:tree-repeat-1e12",
        "toy_hedging_absorption:tree-not-utf8",
        "toy_absorption_hunt:ablator-width-huge",
        "toy_absorption_hunt:samples-1e18",
        "train_synthetic_sae:samples-1e18",
        "train_synthetic_sae:model-file-garbled",
        "gemma_cooccurrences:txt-not-utf8",
        "gemma_cooccurrences:jsonl-malformed",
        "gemma_cooccurrences:jsonl-text-null",
        "gemma_cooccurrences:jsonl-text-list",
        "gemma_cooccurrences:txt-empty",
        "gemma_cooccurrences:one-token-prompts",
        "gemma_cooccurrences:sae-zero-width",
        "gemma_cooccurrences:sae-release-a-path",
        "gemma_cooccurrences:batch-size-huge",
        "gemma_cooccurrences:output-dir-unwritable",
        "gemma_cooccurrences:resume-counts-flipped",
        "gemma_cooccurrences:resume-a-ablation-run",
        "merge_cooccurrences:counts-flipped",
        "merge_cooccurrences:no-tokens",
        "merge_cooccurrences:an-ablation-run",
        "gemma_selective_ablate:jsonl-text-null",
        "gemma_selective_ablate:jsonl-empty",
        "gemma_selective_ablate:sae-enormous-width",
        "gemma_selective_ablate:cooccurrence-dir-no-tokens",
        "gemma_selective_ablate:resume-a-cooccurrence-run",
        "gemma_selective_ablate:resume-config-garbled",
        "gemma_selective_ablate:resume-more-prompts",
        "gemma_selective_ablate:resume-progress-garbled",
        "look_for_pairs:shard-flipped",
        "look_for_pairs:shard-missing",
        "look_for_pairs:ablation-dir-a-cooccurrence-run",
        "look_for_pairs:cooccurrence-dir-no-tokens",
        "look_for_pairs:output-dir-a-file",
        "prompt_server:sae-zero-width",
        "prompt_client:server-down",
        "first_letter_absorption:sae-release-a-path",
        "first_letter_absorption:output-dir-a-file",
        "sae_ception:local-not-utf8",
        "sae_ception:local-text-null",
        "sae_ception:resume-a-ablation-run",
        "sae_ception:layer-unknown",
    }
)


def tiered(case: Case) -> Any:
    return pytest.param(
        case, id=case.id, marks=() if case.id in DEFAULT_TIER else (pytest.mark.slow,)
    )


@pytest.mark.parametrize("case", [tiered(case) for case in CASES])
def test_bad_input_is_one_line_naming_its_flag(
    case: Case, lab: Lab, tmp_path: Path, no_serving: None
) -> None:
    for prepare in case.prepare:
        prepare(lab, tmp_path)
    before = snapshot(tmp_path)
    places = {"tmp": str(tmp_path), "corpus": str(lab.corpus)}
    args = list(SCRIPTS[case.script]) if case.base else []
    if case.script != "prompt_server":
        args += ["--output-dir", str(tmp_path / "out")]
    args += [arg.format(**places) for arg in case.args]
    code, output, exception = within(CASE_SECONDS, lambda: invoke(case.script, args))
    # The lines a terminal shows: a carriage return (a progress bar redrawn) overwrites its line.
    shown = (line.rsplit("\r", 1)[-1] for line in output.split("\n"))
    lines = [line for line in shown if line.strip()]
    assert not isinstance(exception, Exception) or isinstance(exception, SystemExit), output
    assert "Traceback" not in output, output
    assert code != 0, output
    assert len(lines) == 1 + case.status_lines, output
    error = lines[-1]
    assert error.startswith("error: ") and case.names in error, output
    assert case.fragment in error, output
    out = tmp_path / "out"
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an output folder made and left empty holds no run
    assert snapshot(tmp_path) == before, "a run directory or a changed file was left behind"


def test_every_case_is_named_once_and_tries_an_issue_case() -> None:
    assert len({case.id for case in CASES}) == len(CASES)
    assert {case.issue for case in CASES} == set(ISSUE_CASES)


def test_the_default_tier_tries_every_script_and_every_kind_of_bad_input() -> None:
    default = [case for case in CASES if case.id in DEFAULT_TIER]
    assert len(default) == len(DEFAULT_TIER)  # every name is a case
    assert {case.script for case in default} == set(SCRIPTS)
    assert {case.issue for case in default} == set(ISSUE_CASES)


def test_prompt_client_against_a_web_server_that_is_not_a_prompt_server(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    from tests.highlight.fakes import live_server

    app = FastAPI()
    app.get("/api/info", response_class=PlainTextResponse)(lambda: "<html>a blog</html>")
    with live_server(app) as url:
        args = ["--prompt", "The snake", "--server-url", url, "--output-dir", str(tmp_path / "out")]
        code, output, _ = invoke("prompt_client", args)
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1, output
    assert lines[0].startswith("error: --server-url: ") and "Traceback" not in output, output
    assert not (tmp_path / "out").exists()
