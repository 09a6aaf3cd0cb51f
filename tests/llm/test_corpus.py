import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sae_hacking.errors import UserInputError
from sae_hacking.llm import CorpusSpec, iter_texts, iter_token_batches, tiny_tokenizer

TEXTS = [f"Prompt number {i} says something about snakes and {i * 7} stones." for i in range(11)]


@pytest.fixture(params=[".txt", ".jsonl", ".parquet"])
def corpus_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"corpus{request.param}"
    if request.param == ".txt":
        path.write_text("\n".join([*TEXTS[:5], "   ", *TEXTS[5:]]) + "\n", encoding="utf-8")
    elif request.param == ".jsonl":
        path.write_text(
            "".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(TEXTS))
        )
    else:
        pq.write_table(pa.table({"text": TEXTS}), path)
    return path


def test_local_files_give_every_text_in_order(corpus_file: Path) -> None:
    assert list(iter_texts(CorpusSpec(dataset_paths=(corpus_file,)))) == TEXTS


def test_ranks_take_disjoint_shards_that_cover_the_corpus(corpus_file: Path) -> None:
    spec = CorpusSpec(dataset_paths=(corpus_file,))
    shards = [list(iter_texts(spec, rank=r, world=3)) for r in range(3)]
    assert sorted(text for shard in shards for text in shard) == sorted(TEXTS)
    assert shards[1] == TEXTS[1::3]


def test_skip_resumes_a_rank_where_it_stopped(corpus_file: Path) -> None:
    spec = CorpusSpec(dataset_paths=(corpus_file,))
    assert list(iter_texts(spec, rank=1, world=2, skip=2)) == TEXTS[1::2][2:]


def test_token_batches_pad_left_truncate_and_exclude_pad_and_bos() -> None:
    tok = tiny_tokenizer()
    texts = ["a", "The snake slid under the stone wall and waited for the sun."]
    (batch,) = iter_token_batches(texts, tok, batch_size=4, max_tokens=8)
    assert batch.tokens_BS.shape == (2, 8)
    assert batch.tokens_BS[1, 0] == tok.bos_token_id
    expected = batch.tokens_BS.ne(0) & batch.tokens_BS.ne(2)  # <pad> and <bos>, as in Gemma
    assert torch.equal(batch.counted_BS, expected)
    (with_bos,) = iter_token_batches(texts, tok, batch_size=4, max_tokens=8, count_bos=True)
    assert torch.equal(with_bos.counted_BS, with_bos.attention_mask_BS.to(torch.bool))


def test_batches_hold_at_most_batch_size_prompts() -> None:
    sizes = [b.n_prompts for b in iter_token_batches(TEXTS, tiny_tokenizer(), 4, 16)]
    assert sizes == [4, 4, 3]


def test_missing_or_unsupported_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"--dataset-path: .* is not a file"):
        CorpusSpec(dataset_paths=(tmp_path / "nope.txt",))
    csv = tmp_path / "x.csv"
    csv.write_text("text\n")
    with pytest.raises(UserInputError, match=r"is not .txt, .jsonl, .parquet"):
        CorpusSpec(dataset_paths=(csv,))


def test_missing_text_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(UserInputError, match="--text-field: line 1"):
        list(iter_texts(CorpusSpec(dataset_paths=(path,))))


def test_hub_dataset_offline_is_a_one_line_error() -> None:
    with pytest.raises(UserInputError, match="--dataset-id: cannot stream"):
        next(iter_texts(CorpusSpec(dataset_id="monology/pile-uncopyrighted")))
