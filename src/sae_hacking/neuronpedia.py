"""Neuronpedia: a latent's page, and its explanations cached on disk (a missing network never
fails a run)."""

import json
from pathlib import Path

import httpx

from sae_hacking.io.atomic import atomic_write_json

NEURONPEDIA = "https://www.neuronpedia.org"
API = f"{NEURONPEDIA}/api/feature"


def neuronpedia_url(neuronpedia_id: str | None, latent: int) -> str | None:
    """The latent's Neuronpedia page, when the SAE has a Neuronpedia id (``model/source``)."""
    return None if not neuronpedia_id else f"{NEURONPEDIA}/{neuronpedia_id}/{latent}"


def _fetch(client: httpx.Client, neuronpedia_id: str, latent: int) -> str | None:
    try:
        response = client.get(f"{API}/{neuronpedia_id}/{latent}")
        response.raise_for_status()
        explanations = response.json().get("explanations") or []
    except (httpx.HTTPError, ValueError):
        return None
    texts = [
        e.get("description") for e in explanations if isinstance(e, dict) and e.get("description")
    ]
    return str(texts[0]) if texts else None


def explain(
    neuronpedia_id: str | None, latents: list[int], cache_path: Path, timeout_s: float = 5.0
) -> dict[int, str | None]:
    """Explanations of ``latents`` (None where unknown), from the cache or fetched once and cached."""
    if not neuronpedia_id:
        return dict.fromkeys(latents)
    cache: dict[str, str | None] = {}
    if cache_path.is_file():
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    missing = [latent for latent in latents if f"{neuronpedia_id}/{latent}" not in cache]
    if missing:
        with httpx.Client(timeout=timeout_s) as client:
            for latent in missing:
                text = _fetch(client, neuronpedia_id, latent)
                if text is None and not cache:
                    # Offline or unreachable: don't wait out one timeout per latent.
                    try:
                        client.head(API, timeout=timeout_s)
                    except httpx.HTTPError:
                        break
                if text is not None:
                    cache[f"{neuronpedia_id}/{latent}"] = text
        atomic_write_json(cache_path, cache)
    return {latent: cache.get(f"{neuronpedia_id}/{latent}") for latent in latents}
