"""A model-free highlighter with known answers, and a live uvicorn server for browser and client tests."""

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from sae_hacking.highlight.protocol import HighlightError
from sae_hacking.highlight.schemas import (
    HighlightRequest,
    HighlightResult,
    LatentTrace,
    ServerInfo,
    TopLatent,
)
from sae_hacking.neuronpedia import neuronpedia_url

FAKE_WIDTH = 100
FAKE_DEFAULT = ("fake-release", "layer_1/width_100")


def fake_tokens(prompt: str) -> list[str]:
    """A BOS marker and then words with their leading whitespace, like a BPE's pieces."""
    return ["<bos>", *re.findall(r"\s*\S+|\s+$", prompt)]


def fake_activation(token: str, latent: int) -> float:
    """Known, varied values: some zeros, some positive, depending on token and latent."""
    return float((len(token.strip()) * (latent + 3)) % 7) / 2.0


class FakeHighlighter:
    """Answers like a model would, counts how many calls overlap, and can be made slow."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._counter = threading.Lock()

    def info(self) -> ServerInfo:
        return ServerInfo.for_model("fake", FAKE_DEFAULT, max_prompt_tokens=64)

    def highlight(self, request: HighlightRequest) -> HighlightResult:
        with self._counter:
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay_s)
            return self._answer(request)
        finally:
            with self._counter:
                self.in_flight -= 1

    def _answer(self, request: HighlightRequest) -> HighlightResult:
        if request.sae_release != FAKE_DEFAULT[0]:
            raise HighlightError(422, f"unknown SAE release {request.sae_release!r}")
        tokens = fake_tokens(request.prompt)
        if len(tokens) > 64:
            raise HighlightError(413, "the prompt is too long")
        for latent in request.latents:
            if latent >= FAKE_WIDTH:
                raise HighlightError(422, f"latent {latent} is out of range")
        peaks = {
            latent: max(fake_activation(t, latent) for t in tokens[1:]) if len(tokens) > 1 else 0.0
            for latent in range(FAKE_WIDTH)
        }
        top = None
        latents = list(request.latents)
        if not latents:
            ranked = sorted((-peak, latent) for latent, peak in peaks.items() if peak > 0)
            latents = [latent for _, latent in ranked[: request.top_k]]
            top = [
                TopLatent(latent=latent, max_activation=peaks[latent], neuronpedia_url=None)
                for latent in latents
            ]
        traces = [
            LatentTrace(
                latent=latent,
                activations=[fake_activation(t, latent) for t in tokens],
                max_activation=peaks[latent],
                neuronpedia_url=neuronpedia_url("fake-model/1-res", latent),
            )
            for latent in latents
        ]
        return HighlightResult(
            model="fake",
            sae_release=request.sae_release,
            sae_id=request.sae_id,
            hook_name="blocks.1.hook_resid_post",
            sae_width=FAKE_WIDTH,
            tokens=tokens,
            special_prefix=1,
            traces=traces,
            top_latents=top,
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
