"""The token bitmaps behind a latent's generality: the fast path against a Python reference, the
linear-counting estimate against the exact number of distinct tokens."""

import math

import torch

from sae_hacking.core.distinct_tokens import TOKEN_BITS, add_token_bits_, distinct_tokens
from tests.cooccurrence_setup import reference_token_bit


def test_bits_set_match_a_python_reference_on_random_firings() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        width, firings = 7, 500
        latent_J = torch.randint(0, width, (firings,), generator=generator)
        token_J = torch.randint(0, 256_000, (firings,), generator=generator)
        bits_ED = torch.zeros(width, TOKEN_BITS, dtype=torch.uint8)
        add_token_bits_(bits_ED, latent_J, token_J)
        expected = torch.zeros(width, TOKEN_BITS, dtype=torch.uint8)
        for latent, token in zip(latent_J.tolist(), token_J.tolist(), strict=True):
            expected[latent, reference_token_bit(token)] = 1
        assert torch.equal(bits_ED, expected)


def test_the_union_of_two_halves_is_their_or() -> None:
    generator = torch.Generator().manual_seed(1)
    latent_J = torch.randint(0, 5, (400,), generator=generator)
    token_J = torch.randint(0, 50_000, (400,), generator=generator)
    whole, first, second = (torch.zeros(5, TOKEN_BITS, dtype=torch.uint8) for _ in range(3))
    add_token_bits_(whole, latent_J, token_J)
    add_token_bits_(first, latent_J[:150], token_J[:150])
    add_token_bits_(second, latent_J[150:], token_J[150:])
    assert torch.equal(whole, torch.maximum(first, second))


def test_the_estimate_follows_the_exact_distinct_count() -> None:
    generator = torch.Generator().manual_seed(2)
    sizes = [0, 1, 2, 5, 20, 100, 300, 1000, 3000]
    bits_ED = torch.zeros(len(sizes), TOKEN_BITS, dtype=torch.uint8)
    for row, size in enumerate(sizes):
        distinct_J = torch.randperm(256_000, generator=generator)[:size]
        repeated_J = distinct_J.repeat(3)  # repeats set no new bit
        add_token_bits_(bits_ED, torch.full_like(repeated_J, row), repeated_J)
    estimate_E = distinct_tokens(bits_ED)
    assert estimate_E[0] == 0.0
    for row, size in enumerate(sizes[1:], start=1):
        # Linear counting's standard error is sqrt(m (e^t - t - 1)) / n at load t = n / m.
        load = size / TOKEN_BITS
        error = math.sqrt(TOKEN_BITS * (math.exp(load) - load - 1)) / size
        assert abs(float(estimate_E[row]) / size - 1) <= 4 * error + 0.01, size
    # Monotone in the bits set, capped at m ln m when every bit is set.
    full = torch.ones(1, TOKEN_BITS, dtype=torch.uint8)
    assert math.isclose(
        float(distinct_tokens(full)[0]), TOKEN_BITS * math.log(TOKEN_BITS), rel_tol=1e-5
    )
