"""Exact co-occurrence counting of an ablator SAE's latents over a corpus (gemma_cooccurrences.py)."""
