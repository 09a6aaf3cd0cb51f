"""The probes: training equals torch's Adam with SAEBench's schedule; F1 equals sklearn's."""

import math

import numpy as np
import torch
from sklearn.metrics import f1_score

from sae_hacking.first_letter.probe import batch_size_for, f1_columns, one_hot, train_probe


def torch_reference(
    x_ND: torch.Tensor,
    labels_N: torch.Tensor,
    classes: int,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    l1: float,
    weight_decay: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAEBench's loop with torch.optim: Adam, ExponentialLR per epoch, BCE with pos_weight, L1."""
    n, dim = x_ND.shape
    y_NC = one_hot(labels_N, classes)
    pos_weight_C = (n - y_NC.sum(0)) / y_NC.sum(0).clamp(min=1)
    bound = 1.0 / math.sqrt(dim)
    init = torch.rand(classes, dim + 1, generator=generator) * 2 * bound - bound
    weight = init[:, :dim].clone().requires_grad_(True)
    bias = init[:, dim].clone().requires_grad_(True)
    optimizer = torch.optim.Adam([weight, bias], lr=1e-2, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(
        optimizer, gamma=math.exp(math.log(1e-5 / 1e-2) / epochs)
    )
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight_C)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            loss = loss_fn(x_ND[index] @ weight.T + bias, y_NC[index])
            loss = loss + l1 * weight.abs().sum(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    return weight.detach(), bias.detach()


def test_probe_training_equals_torch_adam_with_saebenchs_schedule() -> None:
    data = torch.Generator().manual_seed(0)
    x_ND = torch.randn(90, 7, generator=data)
    labels_N = torch.randint(0, 4, (90,), generator=data)
    probe = train_probe(
        lambda index: x_ND[index],
        labels_N,
        7,
        4,
        epochs=6,
        batch_size=32,
        generator=torch.Generator().manual_seed(5),
        l1=0.01,
        weight_decay=1e-4,
    )
    weight, bias = torch_reference(
        x_ND, labels_N, 4, 6, 32, torch.Generator().manual_seed(5), 0.01, 1e-4
    )
    torch.testing.assert_close(probe.weight_CD, weight, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(probe.bias_C, bias, atol=1e-6, rtol=1e-5)


def test_a_probe_separates_separable_letters() -> None:
    generator = torch.Generator().manual_seed(1)
    labels_N = torch.arange(260) % 26
    x_ND = 3 * one_hot(labels_N, 26) + 0.1 * torch.randn(260, 26, generator=generator)
    probe = train_probe(
        lambda index: x_ND[index], labels_N, 26, 26, 50, batch_size_for(260, 64), generator
    )
    predicted_NC = probe.scores(x_ND) > 0
    assert f1_columns(predicted_NC, one_hot(labels_N, 26).bool()).min() >= 0.9


def test_f1_equals_sklearn_including_empty_columns() -> None:
    generator = torch.Generator().manual_seed(2)
    predicted = torch.rand(50, 6, generator=generator) < 0.3
    truth = torch.rand(50, 6, generator=generator) < 0.3
    predicted[:, 5] = False
    truth[:, 5] = False
    ours = f1_columns(predicted, truth).numpy()
    theirs = [
        # sklearn's stubs say str; 0 is its documented "score 0 where undefined"
        f1_score(truth[:, j].numpy(), predicted[:, j].numpy(), zero_division=0)  # pyright: ignore[reportArgumentType]
        for j in range(6)
    ]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
