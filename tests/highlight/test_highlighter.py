import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from sae_lens import SAE, HookedSAETransformer

from sae_hacking.highlight.app import create_app
from sae_hacking.highlight.highlighter import ModelHighlighter, top_latents
from sae_hacking.highlight.protocol import HighlightError
from sae_hacking.highlight.schemas import HighlightRequest
from sae_hacking.llm import TINY_ABLATOR_ID, TINY_READER_ID
from tests.highlight.conftest import TINY_DEFAULT, make_highlighter
from tests.highlight.fakes import live_server

PROMPT = "The snake slid under the stone wall and waited for the sun."
ACTS = f"{TINY_ABLATOR_ID.split('/')[0]}.hook_sae_acts_post"


def request(**fields: Any) -> dict[str, Any]:
    return {"prompt": PROMPT, "sae_release": TINY_DEFAULT[0], "sae_id": TINY_DEFAULT[1], **fields}


def direct_acts(model: HookedSAETransformer, sae: SAE[Any], prompt: str) -> torch.Tensor:
    """The obvious way: a full forward pass with the SAE spliced in."""
    with torch.no_grad():
        _, cache = model.run_with_cache_with_saes(model.to_tokens(prompt), saes=[sae])
    return cache[ACTS][0]


def test_api_activations_equal_a_direct_run_with_cache_with_saes_call(
    tiny: HookedSAETransformer, tiny_ablator: SAE[Any], tiny_highlighter: ModelHighlighter
) -> None:
    expected_SE = direct_acts(tiny, tiny_ablator, PROMPT)
    firing = (expected_SE[1:] > 0).any(0).nonzero().flatten()[:5].tolist()
    silent = (expected_SE == 0).all(0).nonzero().flatten()[:1].tolist()
    assert len(firing) == 5 and len(silent) == 1
    test = TestClient(create_app(tiny_highlighter), base_url="http://127.0.0.1")
    result = test.post("/api/highlight", json=request(latents=firing + silent)).json()
    assert result["tokens"] == tiny.to_str_tokens(PROMPT)
    assert result["special_prefix"] == 1
    assert result["hook_name"] == "blocks.3.hook_resid_post" and result["sae_width"] == 512
    for trace in result["traces"]:
        expected_S = expected_SE[:, trace["latent"]]
        torch.testing.assert_close(
            torch.tensor(trace["activations"]), expected_S, atol=1e-5, rtol=1e-5
        )
        assert trace["max_activation"] == pytest.approx(expected_S[1:].max().item(), abs=1e-5)
        assert trace["neuronpedia_url"] is None
    assert result["traces"][-1]["max_activation"] == 0.0


def test_top_latents_match_a_loop_over_every_latent(
    tiny: HookedSAETransformer, tiny_ablator: SAE[Any], tiny_highlighter: ModelHighlighter
) -> None:
    acts_SE = direct_acts(tiny, tiny_ablator, PROMPT)
    peaks = [(max(acts_SE[1:, e].tolist()), e) for e in range(acts_SE.shape[1])]
    expected = [(e, peak) for peak, e in sorted(peaks, key=lambda p: (-p[0], p[1])) if peak > 0][:8]
    result = tiny_highlighter.highlight(HighlightRequest.model_validate(request(top_k=8)))
    assert result.top_latents is not None
    assert [t.latent for t in result.top_latents] == [e for e, _ in expected]
    for top, (_, peak) in zip(result.top_latents, expected, strict=True):
        assert top.max_activation == pytest.approx(peak, abs=1e-5)
    assert [t.latent for t in result.traces] == [e for e, _ in expected]


def test_top_latents_leave_out_silent_latents_and_special_positions() -> None:
    acts_SE = torch.zeros(4, 6)
    acts_SE[0, 5] = 100.0  # the BOS position: never ranked
    acts_SE[2, 1] = 2.0
    acts_SE[3, 4] = 3.0
    values_K, idx_K = top_latents(acts_SE, skip=1, k=5)
    assert idx_K.tolist() == [4, 1] and values_K.tolist() == [3.0, 2.0]
    values_K, idx_K = top_latents(acts_SE[:1], skip=1, k=5)
    assert idx_K.numel() == 0 and values_K.numel() == 0


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"latents": [512]}, 422, "out of range"),
        ({"sae_id": "blocks.99.hook_resid_post/jumprelu/512"}, 422, "not a hook"),
        ({"sae_id": "nonsense"}, 422, "not a tiny SAE id"),
        ({"sae_release": "no-such-release"}, 422, "not a sae-lens release"),
        ({"sae_release": "../etc"}, 422, "never loads SAEs from paths"),
        ({"sae_release": "/tmp"}, 422, "never loads SAEs from paths"),
        ({"prompt": "word " * 200}, 413, "at most 64"),
    ],
)
def test_requests_the_model_cannot_answer_get_a_clear_4xx(
    tiny_highlighter: ModelHighlighter, fields: dict[str, Any], status: int, words: str
) -> None:
    test = TestClient(create_app(tiny_highlighter), base_url="http://127.0.0.1")
    response = test.post("/api/highlight", json=request(**fields))
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert test.post("/api/highlight", json=request(latents=[1])).status_code == 200


def test_a_prompt_past_the_models_context_is_refused_not_cut(tiny: HookedSAETransformer) -> None:
    highlighter = make_highlighter(tiny)
    highlighter.max_prompt_tokens = tiny.cfg.n_ctx
    long_prompt = "word " * (tiny.cfg.n_ctx + 10)
    with pytest.raises(HighlightError) as caught:
        highlighter.highlight(HighlightRequest.model_validate(request(prompt=long_prompt)))
    assert caught.value.status == 413


def test_sae_cache_keeps_the_most_recent_saes_only(tiny: HookedSAETransformer) -> None:
    highlighter = make_highlighter(tiny, cache_size=2)
    other = (TINY_DEFAULT[0], TINY_READER_ID)
    third = (TINY_DEFAULT[0], "blocks.1.hook_resid_post/topk/64")
    for key in (TINY_DEFAULT, other, TINY_DEFAULT, third):
        result = highlighter.highlight(
            HighlightRequest(prompt=PROMPT, sae_release=key[0], sae_id=key[1], latents=[0])
        )
        assert result.sae_id == key[1]
    assert highlighter.saes.keys() == [TINY_DEFAULT, third]


# An audit hook sees every file the process opens for writing, whatever library does it.
_WRITES: list[str] = []
_WATCHING = threading.Event()
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _WATCHING.is_set():
        return
    if event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        ):
            _WRITES.append(f"open {path}")
    elif event in (
        "os.rename",
        "os.remove",
        "os.mkdir",
        "os.rmdir",
        "os.truncate",
        "shutil.copyfile",
    ):
        _WRITES.append(f"{event} {args[0]}")


sys.addaudithook(_audit)


@contextmanager
def watching_writes() -> Iterator[list[str]]:
    _WRITES.clear()
    _WATCHING.set()
    try:
        yield _WRITES
    finally:
        _WATCHING.clear()


def test_serving_writes_no_files_whatever_the_client_asks(
    tiny_highlighter: ModelHighlighter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    test = TestClient(create_app(tiny_highlighter), base_url="http://127.0.0.1")
    with watching_writes() as writes:
        assert test.get("/").status_code == 200
        assert test.post("/api/highlight", json=request()).status_code == 200
        assert (
            test.post("/api/highlight", json=request(output_dir=str(tmp_path))).status_code == 422
        )
        assert (
            test.post("/api/highlight", json=request(sae_release=str(tmp_path))).status_code == 422
        )
    assert writes == []
    assert list(tmp_path.iterdir()) == []


def test_concurrent_requests_on_the_model_all_answer_as_if_alone(
    tiny_highlighter: ModelHighlighter,
) -> None:
    prompts = [f"{PROMPT} number {i}" for i in range(6)]
    alone = [
        tiny_highlighter.highlight(
            HighlightRequest.model_validate(request(prompt=p, latents=[1, 2]))
        )
        for p in prompts
    ]
    answers: dict[int, Any] = {}

    def one(index: int) -> None:
        body = request(prompt=prompts[index], latents=[1, 2])
        answers[index] = httpx.post(f"{base_url}/api/highlight", json=body, timeout=60).json()

    with live_server(create_app(tiny_highlighter)) as base_url:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a request deadlocked"
    for index, expected in enumerate(alone):
        assert answers[index] == expected.model_dump()


def test_the_write_watch_sees_writes_from_python_and_os(tmp_path: Path) -> None:
    with watching_writes() as writes:
        (tmp_path / "a.txt").write_text("x")
        os.close(os.open(tmp_path / "b.bin", os.O_CREAT | os.O_WRONLY))
        (tmp_path / "d").mkdir()
    assert len(writes) == 3
