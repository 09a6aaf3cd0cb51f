from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect
from sae_lens import HookedSAETransformer

from sae_hacking.highlight.app import create_app
from sae_hacking.highlight.highlighter import ModelHighlighter
from sae_hacking.highlight.render import token_rgb
from tests.highlight.browser import ARTIFACTS, launched_chromium
from tests.highlight.fakes import (
    FAKE_DEFAULT,
    FakeHighlighter,
    fake_activation,
    fake_tokens,
    live_server,
)

PROMPT = "The snake slid under the stone wall\nand waited for the sun"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launched_chromium()


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with live_server(create_app(FakeHighlighter())) as url:
        yield url


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 820})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Chromium logs every 4xx answer; the refusal test causes them on purpose, and other tests
    # would fail on their own by never reaching the "done" state.
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "responded with a status of 4" not in message.text
            else None
        ),
    )
    page.goto(base_url)
    expect(page.locator("body")).to_have_attribute("data-state", "ready")
    yield page
    context.close()
    assert errors == [], errors


def highlight(page: Page, prompt: str, latents: str) -> None:
    page.fill("#prompt", prompt)
    page.fill("#latents", latents)
    page.click("#submit")
    expect(page.locator("body")).to_have_attribute("data-state", "done")


def test_page_fills_the_default_sae_from_the_server(page: Page) -> None:
    assert page.input_value("#sae-release") == FAKE_DEFAULT[0]
    assert page.input_value("#sae-id") == FAKE_DEFAULT[1]
    expect(page.locator("#model")).to_have_text("fake")


def test_typed_prompt_shows_tokens_coloured_by_activation_with_values_on_hover(page: Page) -> None:
    highlight(page, PROMPT, "3, 7")
    tokens = fake_tokens(PROMPT)
    cards = page.locator(".trace")
    expect(cards).to_have_count(2)
    spans = cards.nth(0).locator(".tok")
    expect(spans).to_have_count(len(tokens))
    peak = max(fake_activation(t, 3) for t in tokens[1:])
    for position in (1, 2, 5):
        value = fake_activation(tokens[position], 3)
        red, green, blue = token_rgb(value, peak)
        expect(spans.nth(position)).to_have_css("background-color", f"rgb({red}, {green}, {blue})")
    brightest = max(range(1, len(tokens)), key=lambda p: fake_activation(tokens[p], 3))
    spans.nth(brightest).hover()
    hover = page.locator("#hover")
    expect(hover).to_be_visible()
    expect(hover).to_contain_text(f"latent 3  token #{brightest}")
    expect(hover).to_contain_text(
        f"activation {fake_activation(tokens[brightest], 3):g} (100% of peak)"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "prompt-page.png", full_page=True)


def test_empty_latents_list_top_latents_and_a_click_shows_only_that_latent(page: Page) -> None:
    highlight(page, PROMPT, "")
    chips = page.locator(".chip")
    expect(chips).to_have_count(10)
    traces = page.locator(".trace")
    expect(traces).to_have_count(10)
    second = chips.nth(1).get_attribute("data-latent") or ""
    chips.nth(1).click()
    expect(page.locator(".trace:visible")).to_have_count(1)
    expect(page.locator(".trace:visible")).to_have_attribute("data-latent", second)
    expect(chips.nth(1)).to_have_class("chip active")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "prompt-page-top-latents.png", full_page=True)
    chips.nth(1).click()
    expect(page.locator(".trace:visible")).to_have_count(10)


def test_script_in_the_prompt_is_shown_as_text_and_never_runs(page: Page) -> None:
    prompt = (
        '<script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2"> </p><b>bold</b>'
    )
    highlight(page, prompt, "1")
    text = page.locator(".trace .tokens").inner_text()
    assert "<script>window.pwned" in text and '<img src=x onerror="window.pwned' in text
    assert page.locator("#results script, #results img, #results b").count() == 0
    assert page.evaluate("typeof window.pwned") == "undefined"


def test_server_refusal_is_shown_as_an_error(page: Page) -> None:
    page.fill("#sae-release", "no-such-release")
    page.fill("#prompt", "hello")
    page.click("#submit")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("unknown SAE release")
    page.fill("#latents", "1, x")
    page.click("#submit")
    expect(page.locator("#error")).to_contain_text("non-negative integers")


def test_page_highlights_a_prompt_with_the_tiny_model(
    browser: Browser, tiny_highlighter: ModelHighlighter, tiny: HookedSAETransformer
) -> None:
    prompt = "Paris is the capital of France; the snake slid under the stone wall."
    with live_server(create_app(tiny_highlighter)) as url:
        page = browser.new_page(viewport={"width": 1100, "height": 820})
        page.goto(url)
        expect(page.locator("body")).to_have_attribute("data-state", "ready")
        assert page.input_value("#sae-release") == "tiny"
        highlight(page, prompt, "")
        expect(page.locator(".chip")).to_have_count(10)
        expect(page.locator(".trace").nth(0).locator(".tok")).to_have_count(
            len(tiny.to_str_tokens(prompt))
        )
        page.locator(".chip").nth(0).click()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "prompt-page-tiny-model.png", full_page=True)
        page.close()
