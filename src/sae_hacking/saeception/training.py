"""Training a classifier (cross-entropy plus the cosine pull) and an SAE on its hidden activations."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from sae_hacking.core.similarity import unit_rows
from sae_hacking.saeception.classifiers import Classifier
from sae_hacking.saeception.data import LabelledSplit
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.loop import TrainResult, TrainSettings, train
from sae_hacking.toy.training.schedule import Schedule


def cosine_pull_loss(h_BM: Float[Tensor, "B M"], t_BM: Float[Tensor, "B M"]) -> Tensor:
    """Mean of 1 - cos(h, t) over the batch (0 where every h points along its target)."""
    return (1 - F.cosine_similarity(h_BM, t_BM, dim=-1)).mean()


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    batch_size: int
    lr: float
    aux_weight: float


def fit_classifier(
    classifier: nn.Module,
    split: LabelledSplit,
    targets_BM: Float[Tensor, "B M"] | None,
    settings: FitSettings,
    generator: torch.Generator,
    on_epoch: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Adam on CE (+ aux_weight * cosine pull towards ``targets_BM``, indexed like the split).

    Batches are a fresh permutation each epoch from ``generator`` (on the CPU). Returns the last
    epoch's mean losses.
    """
    assert isinstance(classifier, Classifier)
    params = [p for p in classifier.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    device = params[0].device
    labels_B = split.labels_B.to(device)
    n = len(split)
    classifier.train()
    totals = {"ce": 0.0, "aux": 0.0}
    for _ in range(settings.epochs):
        ce_sum = torch.zeros((), device=device)
        aux_sum = torch.zeros((), device=device)
        order_B = torch.randperm(n, generator=generator)
        for start in range(0, n, settings.batch_size):
            idx_B = order_B[start : start + settings.batch_size]
            h_BM, logits_BL = classifier.forward_batch(split.take(idx_B))
            batch_idx = idx_B.to(device)
            ce = F.cross_entropy(logits_BL, labels_B[batch_idx])
            loss = ce
            if targets_BM is not None:
                aux = cosine_pull_loss(h_BM, targets_BM[batch_idx])
                loss = ce + settings.aux_weight * aux
                aux_sum += aux.detach() * idx_B.shape[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ce_sum += ce.detach() * idx_B.shape[0]
        totals = {"ce": ce_sum.item() / n, "aux": aux_sum.item() / n}
        if on_epoch is not None:
            on_epoch()
    classifier.eval()
    return totals


@torch.no_grad()
def hidden_and_logits(
    classifier: nn.Module, split: LabelledSplit, batch_size: int
) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B L"]]:
    """The hidden activations and logits of every example of a split, in order (eval mode)."""
    assert isinstance(classifier, Classifier)
    classifier.eval()
    hidden, logits = [], []
    for start in range(0, len(split), batch_size):
        idx_B = torch.arange(start, min(start + batch_size, len(split)))
        h_BM, logits_BL = classifier.forward_batch(split.take(idx_B))
        hidden.append(h_BM.float())
        logits.append(logits_BL.float())
    return torch.cat(hidden), torch.cat(logits)


class ActivationSource:
    """Rows of a fixed activation matrix, drawn with replacement, for the toy SAE trainer.

    The trainer scores an SAE against ``features_NM``; with no true features here these are the
    unit class-mean activations, so its logged MMCS says how well the decoder holds the classes.
    """

    def __init__(
        self, acts_BM: Float[Tensor, "B M"], labels_B: Int[Tensor, " B"], classes: int
    ) -> None:
        self.acts_BM = acts_BM
        onehot_BL = F.one_hot(labels_B.to(acts_BM.device), classes).to(acts_BM.dtype)
        self.onehot_BL = onehot_BL
        means_LM = onehot_BL.T @ acts_BM / onehot_BL.sum(dim=0).clamp_min(1).unsqueeze(1)
        self._features_NM = unit_rows(means_LM)

    @property
    def features_NM(self) -> Float[Tensor, "N M"]:
        return self._features_NM

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B N"]]:
        idx_B = torch.randint(
            self.acts_BM.shape[0], (batch_size,), generator=generator, device=generator.device
        )
        return self.acts_BM[idx_B], self.onehot_BL[idx_B]


@dataclass(frozen=True)
class SaeSettings:
    width: int
    k: int
    steps: int
    batch_size: int
    lr: float


def train_sae(
    acts_BM: Float[Tensor, "B M"],
    labels_B: Int[Tensor, " B"],
    classes: int,
    eval_DM: Float[Tensor, "D M"],
    settings: SaeSettings,
    init: torch.Generator,
    batches: torch.Generator,
) -> tuple[TopKSAE, TrainResult]:
    """A top-k SAE trained by the toy trainer on rows of ``acts_BM`` (generators on its device)."""
    shape = TopKShape(model_dim=acts_BM.shape[1], width=settings.width, k=settings.k)
    sae = TopKSAE(shape, init)
    train_settings = TrainSettings(
        steps=settings.steps,
        batch_size=settings.batch_size,
        lr=settings.lr,
        schedule=Schedule(warmup_steps=min(100, settings.steps // 10), decay="cosine"),
        grad_clip=1.0,
        log_every=settings.steps,
    )
    source = ActivationSource(acts_BM, labels_B, classes)
    result = train(sae, source, train_settings, batches, eval_DM)
    sae.eval()
    return sae, result
