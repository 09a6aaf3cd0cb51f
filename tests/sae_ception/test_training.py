"""The auxiliary loss pulls hidden activations towards their targets."""

import torch

from sae_hacking.saeception.training import cosine_pull_loss


def test_a_gradient_step_on_the_pull_loss_turns_h_towards_t() -> None:
    g = torch.Generator().manual_seed(0)
    h_BM = torch.randn(16, 8, generator=g, requires_grad=True)
    t_BM = torch.randn(16, 8, generator=g)
    before_B = torch.cosine_similarity(h_BM, t_BM, dim=-1).detach()
    cosine_pull_loss(h_BM, t_BM).backward()
    assert h_BM.grad is not None
    # The gradient only turns h: it is orthogonal to h, so a small step keeps its norm.
    torch.testing.assert_close((h_BM.grad * h_BM).sum(dim=1), torch.zeros(16), atol=1e-6, rtol=0)
    stepped_BM = h_BM.detach() - 0.05 * h_BM.grad
    after_B = torch.cosine_similarity(stepped_BM, t_BM, dim=-1)
    assert bool((after_B > before_B).all())


def test_the_pull_loss_is_zero_along_the_target_and_two_against_it() -> None:
    t_BM = torch.tensor([[1.0, 2.0, -1.0]])
    assert abs(cosine_pull_loss(3 * t_BM, t_BM).item()) < 1e-6
    assert abs(cosine_pull_loss(-t_BM, t_BM).item() - 2.0) < 1e-6


def test_a_zero_target_pulls_on_nothing() -> None:
    h_BM = torch.randn(4, 3, requires_grad=True)
    cosine_pull_loss(h_BM, torch.zeros(4, 3)).backward()
    assert h_BM.grad is not None and torch.equal(h_BM.grad, torch.zeros(4, 3))
