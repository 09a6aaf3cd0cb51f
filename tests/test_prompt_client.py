import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from typer.testing import CliRunner

from sae_hacking.cli import config_command, make_app
from sae_hacking.config import ConfigError, flag_of
from sae_hacking.highlight.app import create_app
from sae_hacking.highlight.config import ClientConfig
from sae_hacking.prompt_client import app
from tests.highlight.browser import ARTIFACTS, launched_chromium
from tests.highlight.fakes import FAKE_DEFAULT, FakeHighlighter, fake_tokens, free_port, live_server

HOSTILE = '<script>window.pwned = 1</script> [bold red]rich markup[/] & "quotes" <img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with live_server(create_app(FakeHighlighter())) as url:
        yield url


def only_run_dir(output_dir: Path) -> Path:
    (run_dir,) = output_dir.iterdir()
    return run_dir


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_feature_idx_takes_repeated_flags_and_comma_lists() -> None:
    seen: list[ClientConfig] = []
    command = make_app("client")
    config_command(command, ClientConfig, seen.append)
    runner = CliRunner()
    args = ["--prompt", "hi", "--feature-idx", "3", "--feature-idx", "5,8"]
    assert runner.invoke(command, [*args, "--feature-idx", " 13 , 21 "]).exit_code == 0
    assert runner.invoke(command, ["--prompt", "hi"]).exit_code == 0
    assert [c.feature_idx for c in seen] == [(3, 5, 8, 13, 21), ()]
    refused = runner.invoke(command, ["--prompt", "hi", "--feature-idx", "2,-1"])
    assert refused.exit_code == 2
    assert refused.output.strip() == "error: --feature-idx: -1 must not be negative"


@pytest.mark.parametrize(
    ("fields", "flag"),
    [
        ({"prompt": ""}, "--prompt"),
        ({"prompt": "x" * 9000}, "--prompt"),
        ({"feature_idx": (1, 1)}, "--feature-idx"),
        ({"feature_idx": tuple(range(17))}, "--feature-idx"),
        ({"sae_release": "tiny"}, "--sae-id"),
        ({"server_url": "ftp://127.0.0.1"}, "--server-url"),
        ({"server_url": "127.0.0.1:8000"}, "--server-url"),
        ({"top_k": 0}, "--top-k"),
    ],
)
def test_bad_flags_name_the_flag(fields: dict[str, object], flag: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ClientConfig(**{"prompt": "hi", **fields})  # pyright: ignore[reportArgumentType]
    assert flag_of(caught.value.field) == flag


def test_client_writes_escaped_html_and_json_in_its_own_run_dir(
    server: str, tmp_path: Path
) -> None:
    output_dir = tmp_path / "runs [/bold] [red]"  # rich markup in a path must print as text
    code, output = invoke(
        "--prompt", HOSTILE, "--feature-idx", "3", "--feature-idx", "5,7",
        "--sae-release", FAKE_DEFAULT[0], "--sae-id", FAKE_DEFAULT[1],
        "--server-url", server, "--output-dir", str(output_dir),
    )  # fmt: skip
    assert code == 0, output
    run_dir = only_run_dir(output_dir)
    assert run_dir.name.startswith("prompt_client-")
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config.json",
        "highlight.html",
        "highlight.json",
    ]
    saved = json.loads((run_dir / "highlight.json").read_text())
    assert [t["latent"] for t in saved["traces"]] == [3, 5, 7]
    assert saved["tokens"] == fake_tokens(HOSTILE)
    html = (run_dir / "highlight.html").read_text()
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in html
    assert html.count('<span class="tok') == 3 * len(fake_tokens(HOSTILE))
    # The terminal shows the prompt's text and the path as text, rich markup included.
    # The terminal wraps long lines at spaces; compare without whitespace.
    squeezed = "".join(output.split())
    assert "[boldred]richmarkup[/]" in squeezed
    assert "latent 3" in output and "".join(str(run_dir / "highlight.html").split()) in squeezed


def test_saved_html_opens_in_chromium_with_tokens_and_runs_no_script(
    server: str, tmp_path: Path
) -> None:
    code, output = invoke(
        "--prompt", HOSTILE, "--server-url", server, "--output-dir", str(tmp_path)
    )
    assert code == 0, output
    html_path = only_run_dir(tmp_path) / "highlight.html"
    for browser in launched_chromium():
        view(browser, html_path)


def view(browser: Browser, html_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.goto(html_path.as_uri())
    traces = page.locator(".trace")
    assert traces.count() == 10  # no --feature-idx: the server's top latents
    assert page.locator(".chip").count() == 10
    assert traces.nth(0).locator(".tok").count() == len(fake_tokens(HOSTILE))
    assert "<script>window.pwned = 1</script>" in page.locator(".prompt").inner_text()
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("main script, main img").count() == 0
    traces.nth(0).locator(".tok").nth(2).hover()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "prompt-client.png", full_page=True)
    page.close()


def test_default_sae_comes_from_the_server(server: str, tmp_path: Path) -> None:
    code, output = invoke(
        "--prompt", "hello there", "--server-url", server, "--output-dir", str(tmp_path)
    )
    assert code == 0, output
    saved = json.loads((only_run_dir(tmp_path) / "highlight.json").read_text())
    assert (saved["sae_release"], saved["sae_id"]) == FAKE_DEFAULT


def test_a_refusal_is_one_line_with_the_servers_reason(server: str, tmp_path: Path) -> None:
    code, output = invoke(
        "--prompt", "hi", "--sae-release", "nope", "--sae-id", "x",
        "--server-url", server, "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 2
    assert "refused the request (HTTP 422): unknown SAE release 'nope'" in output
    assert "Traceback" not in output
    assert list(tmp_path.iterdir()) == []


def test_no_server_is_one_line_saying_how_to_start_one(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, output = invoke("--prompt", "hi", "--server-url", url, "--output-dir", str(tmp_path))
    assert code == 2
    assert f"--server-url: cannot reach {url}" in output and "prompt_server.py" in output
    assert list(tmp_path.iterdir()) == []
