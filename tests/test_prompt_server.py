import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import sae_hacking.highlight.server as server_module
from sae_hacking.config import ConfigError, flag_of
from sae_hacking.errors import UserInputError
from sae_hacking.highlight.config import ServerConfig
from sae_hacking.highlight.schemas import HighlightRequest
from sae_hacking.highlight.server import check_release_name, prompt_token_limit, url_of
from sae_hacking.llm import DEFAULT_ABLATOR_ID, DEFAULT_RELEASE, TINY_ABLATOR_ID, tiny_model
from sae_hacking.prompt_server import app
from tests.highlight.conftest import make_highlighter
from tests.highlight.fakes import free_port

SCRIPT = Path(__file__).resolve().parents[1] / "src" / "sae_hacking" / "prompt_server.py"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    assert ServerConfig(model="tiny", host=host).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com", ""])
def test_other_hosts_are_refused_with_the_tunnel_advice(host: str) -> None:
    with pytest.raises(ConfigError, match=r"^host: .*SSH tunnel"):
        ServerConfig(model="tiny", host=host)


@pytest.mark.parametrize(
    ("fields", "flag"),
    [
        ({"port": 0}, "--port"),
        ({"port": 70000}, "--port"),
        ({"sae_cache_size": 0}, "--sae-cache-size"),
        ({"max_tokens_in_prompt": 0}, "--max-tokens-in-prompt"),
        ({"dtype": "float8"}, "--dtype"),
        ({"sae_release": "tiny"}, "--sae-id"),
    ],
)
def test_bad_flags_name_the_flag(fields: dict[str, object], flag: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerConfig(**{"model": "tiny", **fields})  # pyright: ignore[reportArgumentType]
    assert flag_of(caught.value.field) == flag


@pytest.mark.parametrize(
    ("fields", "flag"),
    [({"max_tokens_in_prompt": 257}, "--max-tokens-in-prompt"), ({"model": "no"}, "--model")],
)
def test_flags_checked_against_the_model_name_the_flag(
    fields: dict[str, object], flag: str
) -> None:
    """Checked against the model's config before the model loads (not in the config: --help and
    flag errors must not wait for transformer-lens)."""
    with pytest.raises(UserInputError) as caught:
        prompt_token_limit(ServerConfig(**{"model": "tiny", **fields}))  # pyright: ignore[reportArgumentType]
    error = caught.value
    assert (flag_of(error.field) if isinstance(error, ConfigError) else error.flag) == flag


def test_default_sae_is_the_originals_for_gemma_and_the_stand_in_for_tiny() -> None:
    assert ServerConfig(model="tiny").default_sae == ("tiny", TINY_ABLATOR_ID)
    assert ServerConfig().default_sae == (DEFAULT_RELEASE, DEFAULT_ABLATOR_ID)
    assert ServerConfig(model="tiny", sae_release="tiny", sae_id="x").default_sae == ("tiny", "x")


@pytest.mark.parametrize(
    ("release", "allowed"),
    [
        ("tiny", True),
        ("gemma-scope-2b-pt-res-canonical", True),
        ("google/gemma-scope-2b-pt-res", True),
        ("/etc", False),
        ("./x", False),
        ("../x", False),
        ("a/../b", False),
        ("~/saes", False),
        ("a/b/c", False),
    ],
)
def test_releases_are_names_never_paths(release: str, allowed: bool) -> None:
    if allowed:
        check_release_name(release)
    else:
        with pytest.raises(UserInputError, match="never loads SAEs from paths"):
            check_release_name(release)


def test_url_brackets_ipv6_hosts() -> None:
    assert url_of("127.0.0.1", 8000) == "http://127.0.0.1:8000/"
    assert url_of("::1", 8000) == "http://[::1]:8000/"


def test_cli_refuses_a_public_host_in_one_line() -> None:
    result = CliRunner().invoke(app, ["--model", "tiny", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "error: --host: '0.0.0.0' is not a loopback address" in result.output
    assert "Traceback" not in result.output


def test_prompt_limit_defaults_to_1024_or_the_models_context() -> None:
    assert prompt_token_limit(ServerConfig(model="tiny")) == 256
    assert prompt_token_limit(ServerConfig(model="tiny", max_tokens_in_prompt=100)) == 100
    assert prompt_token_limit(ServerConfig()) == 1024


def test_cli_loads_the_model_and_serves_the_app_on_the_asked_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: dict[str, Any] = {}

    def fake_uvicorn_run(app: FastAPI, host: str, port: int, log_level: str) -> None:
        served.update(app=app, host=host, port=port)

    monkeypatch.setattr(server_module.uvicorn, "run", fake_uvicorn_run)
    args = ["--model", "tiny", "--device", "cpu", "--port", "8123", "--max-prompt-tokens", "20"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (served["host"], served["port"]) == ("127.0.0.1", 8123)
    test = TestClient(served["app"], base_url="http://127.0.0.1:8123")
    assert test.get("/api/info").json()["max_prompt_tokens"] == 20
    body = {"prompt": "Paris", "sae_release": "tiny", "sae_id": TINY_ABLATOR_ID, "latents": [0]}
    assert test.post("/api/highlight", json=body).status_code == 200
    assert test.post("/api/highlight", json={**body, "prompt": "word " * 30}).status_code == 413


# A fresh interpreter imports torch, sae-lens and transformers again: about 40 s on two busy cores.
@pytest.mark.slow
def test_script_serves_the_tiny_model_on_loopback_and_writes_nothing(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--model", "tiny", "--device", "cpu", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                info = httpx.get(f"{base_url}/api/info", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.25)
        assert (info["model"], info["default_sae_id"]) == ("tiny", TINY_ABLATOR_ID)
        body = {
            "prompt": "Paris is the capital of France",
            "sae_release": "tiny",
            "sae_id": TINY_ABLATOR_ID,
        }
        served = httpx.post(f"{base_url}/api/highlight", json=body, timeout=60).json()
        assert "<script>" in httpx.get(base_url, timeout=10).text
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    local = make_highlighter(tiny_model()).highlight(HighlightRequest.model_validate(body))
    assert served["tokens"] == local.tokens
    assert [t["latent"] for t in served["traces"]] == [t.latent for t in local.traces]
    for trace, expected in zip(served["traces"], local.traces, strict=True):
        torch.testing.assert_close(
            torch.tensor(trace["activations"]), torch.tensor(expected.activations)
        )
    assert f"http://127.0.0.1:{port}/" in output
    assert list(tmp_path.iterdir()) == []
