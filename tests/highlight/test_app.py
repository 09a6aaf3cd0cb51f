import json
import random
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from sae_hacking.highlight.app import MAX_WAITING, ModelGate, create_app, is_loopback_host
from sae_hacking.highlight.protocol import HighlightError
from sae_hacking.highlight.schemas import MAX_LATENTS, MAX_PROMPT_CHARS, HighlightRequest
from tests.highlight.fakes import (
    FAKE_DEFAULT,
    FakeHighlighter,
    fake_activation,
    fake_tokens,
    live_server,
)

VALID: dict[str, Any] = {
    "prompt": "The snake slid under the stone wall",
    "sae_release": FAKE_DEFAULT[0],
    "sae_id": FAKE_DEFAULT[1],
    "latents": [3, 7],
}


def client(highlighter: FakeHighlighter | None = None, **kwargs: Any) -> TestClient:
    app = create_app(highlighter or FakeHighlighter(), **kwargs)
    return TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)


class AnyResponse(Protocol):
    # The test client's and httpx's responses are different classes with the same surface.
    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


def assert_json_error(response: AnyResponse, lowest: int = 400, highest: int = 499) -> None:
    assert lowest <= response.status_code <= highest, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["problems"], list)


def test_highlight_returns_each_requested_latent_on_every_token() -> None:
    response = client().post("/api/highlight", json=VALID)
    assert response.status_code == 200
    result = response.json()
    tokens = fake_tokens(VALID["prompt"])
    assert result["tokens"] == tokens
    assert [trace["latent"] for trace in result["traces"]] == [3, 7]
    for trace in result["traces"]:
        assert trace["activations"] == [fake_activation(t, trace["latent"]) for t in tokens]
        assert (
            trace["neuronpedia_url"]
            == f"https://www.neuronpedia.org/fake-model/1-res/{trace['latent']}"
        )
    assert result["top_latents"] is None


def test_no_latents_returns_top_latents_by_peak_with_their_traces() -> None:
    body = {**VALID, "latents": [], "top_k": 5}
    result = client().post("/api/highlight", json=body).json()
    peaks = [latent["max_activation"] for latent in result["top_latents"]]
    assert len(peaks) == 5 and peaks == sorted(peaks, reverse=True)
    assert [t["latent"] for t in result["traces"]] == [t["latent"] for t in result["top_latents"]]


def test_info_names_model_defaults_and_bounds() -> None:
    info = client().get("/api/info").json()
    assert (info["default_sae_release"], info["default_sae_id"]) == FAKE_DEFAULT
    assert info["max_prompt_chars"] == MAX_PROMPT_CHARS
    assert info["max_latents"] == MAX_LATENTS


def test_page_is_self_contained_and_locked_down_by_its_policy() -> None:
    response = client().get("/")
    assert response.status_code == 200
    html = response.text
    assert "<script>" in html and "<style>" in html
    # Nothing is loaded from elsewhere; the only URLs are Neuronpedia links a person may follow.
    for external in ("<script src", "<link", "@import", "url(", 'src="http', "src=http"):
        assert external not in html
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_script_in_prompt_comes_back_as_json_data_only() -> None:
    prompt = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
    response = client().post("/api/highlight", json={**VALID, "prompt": prompt})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "".join(response.json()["tokens"][1:]) == prompt


def test_highlighter_refusals_keep_their_status() -> None:
    test = client()
    assert_json_error(test.post("/api/highlight", json={**VALID, "sae_release": "nope"}), 422, 422)
    assert_json_error(test.post("/api/highlight", json={**VALID, "latents": [100]}), 422, 422)
    assert_json_error(test.post("/api/highlight", json={**VALID, "prompt": "a " * 80}), 413, 413)


def test_unknown_paths_and_methods_get_json_errors() -> None:
    test = client()
    assert_json_error(test.get("/nowhere"), 404, 404)
    assert_json_error(test.get("/api/highlight"), 405, 405)
    assert_json_error(test.delete("/"), 405, 405)
    assert test.get("/docs").status_code == 404


def test_body_over_the_limit_is_refused_before_parsing() -> None:
    test = client(max_body_bytes=1000)
    big = json.dumps({**VALID, "prompt": "x" * 2000})
    assert_json_error(
        test.post("/api/highlight", content=big, headers={"content-type": "application/json"}),
        413,
        413,
    )

    def chunks() -> Any:
        # No Content-Length: the guard must count the streamed bytes.
        for start in range(0, len(big), 100):
            yield big[start : start + 100].encode()

    response = test.post(
        "/api/highlight", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_json_error(response, 413, 413)
    assert test.post("/api/highlight", json=VALID).status_code == 200


def test_foreign_host_header_is_refused() -> None:
    test = client()
    assert_json_error(test.get("/", headers={"host": "evil.example"}), 400, 400)
    assert_json_error(
        test.post("/api/highlight", json=VALID, headers={"host": "10.0.0.1:8000"}), 400, 400
    )
    assert test.get("/api/info", headers={"host": "localhost:8000"}).status_code == 200
    assert test.get("/api/info", headers={"host": "[::1]:8000"}).status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.1:80", True),
        ("127.3.4.5:1", True),
        ("localhost", True),
        ("LOCALHOST:9", True),
        ("[::1]:8000", True),
        ("::1", True),
        ("", False),
        ("0.0.0.0", False),
        ("[::]:80", False),
        ("example.com", False),
        ("127.0.0.1.nip.io", False),
        ("[::1", False),
    ],
)
def test_loopback_host_names(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_a_form_post_from_another_site_is_not_parsed() -> None:
    # Browsers send cross-site form posts as text/plain or form data without a preflight.
    test = client()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        response = test.post(
            "/api/highlight", content=json.dumps(VALID), headers={"content-type": content_type}
        )
        assert_json_error(response, 422, 422)


def schema_accepts(body: dict[str, Any]) -> bool:
    try:
        HighlightRequest.model_validate(body)
    except ValidationError:
        return False
    return True


def malformed_bodies(rng: random.Random, count: int) -> list[bytes]:
    """Broken JSON, wrong shapes and types, unknown fields and values past every bound."""
    wrong_values: list[Any] = [
        None,
        True,
        1.5,
        -1,
        2**40,
        "",
        "3",
        [],
        {},
        [1, "2"],
        "x" * (MAX_PROMPT_CHARS + 1),
        " padded ",
        "tab\there",
        "nul\x00",
        list(range(MAX_LATENTS + 1)),
        [1, 1],
        [-5],
        [True],
        0,
        51,
        {"$gt": 1},
        ["a"],
        3.0,
    ]
    bodies = [
        b"",
        b"{",
        b"[]",
        b"null",
        b"42",
        b'"prompt"',
        b"{'prompt': 1}",
        b"\xff\xfe\x00",
        json.dumps(VALID).encode()[:-1],
        json.dumps([VALID]).encode(),
        b'{"prompt": NaN}',
        b'{"prompt": "a", "prompt": {"nested": [[[[[[]]]]]]}}',
        b"[" * 5000 + b"]" * 5000,
    ]
    while len(bodies) < count:
        body: dict[str, Any] = dict(VALID)
        for _ in range(rng.randint(1, 3)):
            key = rng.choice([*VALID, "top_k"])
            action = rng.random()
            if action < 0.2:
                body.pop(key, None)
            elif action < 0.35:
                body[rng.choice(["output_dir", "path", "__proto__", "Prompt", ""])] = "/tmp/x"
            else:
                body[key] = rng.choice(wrong_values)
        if not schema_accepts(body):
            bodies.append(json.dumps(body).encode())
    return bodies


def test_malformed_requests_get_json_4xx_and_the_server_keeps_serving() -> None:
    highlighter = FakeHighlighter()
    test = client(highlighter)
    bodies = malformed_bodies(random.Random(0), 150)
    for body in bodies:
        response = test.post(
            "/api/highlight", content=body, headers={"content-type": "application/json"}
        )
        assert_json_error(response)
    assert highlighter.calls == 0
    assert test.post("/api/highlight", json=VALID).status_code == 200
    assert test.get("/").status_code == 200


def test_highlighter_bug_becomes_a_json_500_and_the_server_keeps_serving() -> None:
    highlighter = FakeHighlighter()
    test = client(highlighter)
    original = highlighter.highlight

    def broken(request: HighlightRequest) -> Any:
        raise RuntimeError("boom")

    highlighter.highlight = broken  # pyright: ignore[reportAttributeAccessIssue]
    assert_json_error(test.post("/api/highlight", json=VALID), 500, 500)
    highlighter.highlight = original  # pyright: ignore[reportAttributeAccessIssue]
    assert test.post("/api/highlight", json=VALID).status_code == 200


def post_many(base_url: str, count: int) -> list[httpx.Response]:
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        body = {**VALID, "prompt": f"prompt number {index}"}
        response = httpx.post(f"{base_url}/api/highlight", json=body, timeout=30)
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a request deadlocked"
    return responses


def test_concurrent_requests_run_one_at_a_time_while_the_page_stays_responsive() -> None:
    highlighter = FakeHighlighter(delay_s=0.15)
    with live_server(create_app(highlighter)) as base_url, httpx.Client(base_url=base_url) as http:
        waiter = threading.Thread(target=post_many, args=(base_url, 8))
        waiter.start()
        while highlighter.calls == 0:
            time.sleep(0.01)
        # The page and the info answer while the queue of eight (1.2 s of model time) still waits.
        assert http.get("/").status_code == 200
        assert http.get("/api/info").status_code == 200
        assert waiter.is_alive() and highlighter.calls < 8
        waiter.join(timeout=60)
        highlighter.delay_s = 0.01
        responses = post_many(base_url, 6)
    assert [r.status_code for r in responses] == [200] * 6
    assert {r.json()["tokens"][-1] for r in responses} == {f" {i}" for i in range(6)}
    assert highlighter.max_in_flight == 1
    assert highlighter.calls == 14


def test_a_full_queue_is_refused_with_503_and_later_requests_succeed() -> None:
    highlighter = FakeHighlighter(delay_s=0.2)
    with live_server(create_app(highlighter, max_waiting=1)) as base_url:
        responses = post_many(base_url, 6)
        statuses = sorted(r.status_code for r in responses)
        assert 200 in statuses and 503 in statuses
        assert set(statuses) == {200, 503}
        for response in responses:
            if response.status_code == 503:
                assert_json_error(response, 503, 503)
        assert httpx.post(f"{base_url}/api/highlight", json=VALID, timeout=30).status_code == 200
    assert highlighter.max_in_flight == 1


def test_the_gate_answers_one_plus_max_waiting_and_refuses_the_rest_at_once() -> None:
    """The README's numbers: with the model busy, of 20 simultaneous requests 17 are admitted
    (one computing, 16 waiting) and 3 are refused with 503 at once."""
    gate = ModelGate(max_waiting=MAX_WAITING)
    outcomes: list[str] = []
    lock = threading.Lock()
    release = threading.Event()

    def request() -> None:
        try:
            with gate.hold():
                release.wait(timeout=30)
                outcome = "answered"
        except HighlightError as error:
            outcome = str(error.status)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=request) for _ in range(20)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(outcomes) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(outcomes) == ["503"] * 3  # refused while the others still wait
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["503"] * 3 + ["answered"] * 17
