"""score_hunt.py: recall and precision of a hunt's top N against truth pairs, on hand-made files."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sae_hacking.errors import UserInputError
from sae_hacking.hunt_score.config import ScoreHuntConfig
from sae_hacking.hunt_score.run import run, truth_pairs
from sae_hacking.score_hunt import app


def write_pairs(directory: Path, ranking: list[tuple[int, int]], sae_id: str = "a") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    pairs = [{"first": {"latent": i}, "second": {"latent": j}} for i, j in ranking]
    payload = {"ablator": {"id": sae_id}, "pairs": pairs}
    (directory / "pairs.json").write_text(json.dumps(payload), encoding="utf-8")
    return directory


def write_truth(path: Path, pairs: list[tuple[int, int]], sae_ids: list[str] | None = None) -> Path:
    rows = [{"letter_latent": a, "word_latent": w, "strength": 1.0} for a, w in pairs]
    for row, sae_id in zip(rows, sae_ids or [], strict=False):
        row["sae_id"] = sae_id
    path.write_text(json.dumps({"absorbed_pairs": rows}), encoding="utf-8")
    return path


def test_top_n_recall_and_precision_follow_the_hunts_order(tmp_path: Path) -> None:
    # Hunt order: true, false, true (reversed ids), false; truth holds a fourth pair never found.
    pairs_dir = write_pairs(tmp_path / "hunt", [(1, 30), (2, 31), (40, 3), (4, 33)])
    truth = write_truth(tmp_path / "truth.json", [(1, 30), (3, 40), (5, 50)])
    config = ScoreHuntConfig(
        pairs_dir=pairs_dir, truth=truth, top_n=(1, 2, 3, 10), output_dir=tmp_path
    )
    result = run(config)
    got = [(s.n, s.shown, s.hits) for s in result.scores]
    assert got == [(1, 1, 1), (2, 2, 1), (3, 3, 2), (10, 4, 2)]
    assert [round(s.recall, 3) for s in result.scores] == [0.333, 0.333, 0.667, 0.667]
    assert [s.precision for s in result.scores] == [1.0, 0.5, 2 / 3, 0.5]
    written = json.loads((result.run_dir / "score.json").read_text(encoding="utf-8"))
    assert written["missed"] == [[5, 50]]
    assert written["found_anywhere"] == 2


def test_truth_of_several_saes_is_read_for_the_hunts_ablator(tmp_path: Path) -> None:
    truth = write_truth(tmp_path / "t.json", [(1, 2), (3, 4), (5, 6)], ["a", "b", "a"])
    assert truth_pairs(truth, None, "a") == {(1, 2), (5, 6)}
    assert truth_pairs(truth, "b", "a") == {(3, 4)}
    with pytest.raises(UserInputError, match=r"^--sae-id:"):
        truth_pairs(truth, None, "c")
    with pytest.raises(UserInputError, match=r"^--sae-id:"):
        truth_pairs(truth, "z", "a")


def test_bad_inputs_are_one_line_errors_naming_the_flag(tmp_path: Path) -> None:
    truth = write_truth(tmp_path / "t.json", [(1, 2)])
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "bad.json").write_text("[1, 2]", encoding="utf-8")
    runner = CliRunner()
    for args, flag in (
        (["--pairs-dir", str(empty), "--truth", str(truth)], "--pairs-dir"),
        (
            [
                "--pairs-dir",
                str(write_pairs(tmp_path / "h", [])),
                "--truth",
                str(tmp_path / "bad.json"),
            ],
            "--truth",
        ),
        (["--truth", str(truth)], "--pairs-dir"),
    ):
        result = runner.invoke(app, [*args, "--output-dir", str(tmp_path / "out")])
        assert result.exit_code != 0
        assert flag in result.output
    assert not (tmp_path / "out").exists()  # refused before a run directory is made
