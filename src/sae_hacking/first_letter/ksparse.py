"""k-sparse probing and feature splitting (SAEBench 0.6's ``k_sparse_probing.py`` definitions).

For each letter the latents are ranked by an L1 probe on all latents (largest weight first, not
largest magnitude: only latents that predict the letter count); a logistic probe is refit on the
top k for k = 1..max_k (sklearn's ``LogisticRegression(class_weight="balanced")``: L2 with C = 1,
unpenalised intercept) and scored by F1 on the test words at score > 0. The main latents of a
letter are the top k of the last k in the run that each raised F1 by more than the jump threshold.

All 26 x max_k refits are one batched Newton solve here (in chunks of letters on large
vocabularies), against 260 sklearn fits in SAEBench;
tests check it against sklearn itself.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_hacking.first_letter.probe import Probe, Rows, f1_columns, train_probe

NEWTON_STEPS = 50
STEP_SIZES = tuple(0.5**i for i in range(12))
FIT_ELEMENTS = 2**23  # inputs of one batched fit (float64): 64 MiB


@dataclass(frozen=True)
class KSparseResult:
    """Per letter: the ranked latents, F1 at each k, and the main latents the jump rule accepts."""

    ranking_CK: Int[Tensor, "C K"]
    f1_CK: Float[Tensor, "C K"]
    main_latents: list[list[int]]

    def split_count(self, letter: int) -> int:
        """Latents beyond the first among the main latents (SAEBench's ``num_split_features``)."""
        return max(len(self.main_latents[letter]) - 1, 0)


def latent_ranking(
    rows: Rows,
    labels_N: Int[Tensor, " N"],
    width: int,
    max_k: int,
    epochs: int,
    batch_size: int,
    l1: float,
    generator: torch.Generator,
) -> tuple[Int[Tensor, "C K"], Probe]:
    """The top ``max_k`` latents per letter by the weights of an L1 probe on all latents."""
    probe = train_probe(
        rows, labels_N, width, 26, epochs, batch_size, generator, l1=l1, weight_decay=1e-6
    )
    return probe.weight_CD.topk(max_k, dim=1).indices, probe


def _objective(
    x_PNK: Tensor, target_PN: Tensor, weight_PN: Tensor, w_PK: Tensor, penalised_K: Tensor
) -> Tensor:
    z_PN = torch.einsum("pnk,pk->pn", x_PNK, w_PK)
    # log(1 + exp(-y z)) with y in {-1, +1}, stably
    margin_PN = (2 * target_PN - 1) * z_PN
    loss_P = (torch.nn.functional.softplus(-margin_PN) * weight_PN).sum(1)
    return loss_P + 0.5 * (w_PK**2 * penalised_K).sum(1)


def fit_balanced_logistic(
    x_PNK: Float[Tensor, "P N K"], target: Bool[Tensor, "P N"] | Bool[Tensor, " N"]
) -> Float[Tensor, "P K"]:
    """P L2 (C = 1) logistic regressions with balanced class weights, the last column an intercept.

    Minimises ``0.5 |w|^2 + sum_i s_i log(1 + exp(-y_i x_i.w))`` (intercept unpenalised), the
    objective of sklearn's ``LogisticRegression(class_weight="balanced")``, by Newton steps with
    backtracking; columns that are all zero get weight 0, so shorter problems pad to K.
    """
    x_PNK = x_PNK.double()
    p, n, k = x_PNK.shape
    target_PN = target.expand(p, n)
    positives_P1 = target_PN.sum(1, keepdim=True).double()
    weight_PN = torch.where(
        target_PN, n / (2 * positives_P1.clamp(min=1)), n / (2 * (n - positives_P1).clamp(min=1))
    )
    target_PN = target_PN.double()
    penalised_K = torch.ones(k, dtype=torch.float64, device=x_PNK.device)
    penalised_K[-1] = 0.0
    w_PK = torch.zeros(p, k, dtype=torch.float64, device=x_PNK.device)
    current_P = _objective(x_PNK, target_PN, weight_PN, w_PK, penalised_K)
    for _ in range(NEWTON_STEPS):
        z_PN = torch.einsum("pnk,pk->pn", x_PNK, w_PK)
        sigma_PN = torch.sigmoid(z_PN)
        gradient_PK = torch.einsum("pnk,pn->pk", x_PNK, (sigma_PN - target_PN) * weight_PN)
        gradient_PK = gradient_PK + w_PK * penalised_K
        curvature_PN = sigma_PN * (1 - sigma_PN) * weight_PN
        hessian_PKK = torch.einsum("pnk,pn,pnj->pkj", x_PNK, curvature_PN, x_PNK)
        # the tiny ridge keeps an unpenalised intercept solvable when one class is empty
        hessian_PKK = hessian_PKK + torch.diag(penalised_K + 1e-12)
        step_PK = torch.linalg.solve(hessian_PKK, gradient_PK.unsqueeze(-1)).squeeze(-1)
        best_P = current_P
        chosen_PK = torch.zeros_like(w_PK)
        decided_P = torch.zeros(p, dtype=torch.bool, device=x_PNK.device)
        for size in STEP_SIZES:
            trial_PK = w_PK - size * step_PK
            value_P = _objective(x_PNK, target_PN, weight_PN, trial_PK, penalised_K)
            take_P = ~decided_P & (value_P <= current_P)
            chosen_PK[take_P] = trial_PK[take_P]
            best_P = torch.where(take_P, value_P, best_P)
            decided_P |= take_P
            if bool(decided_P.all()):
                break
        chosen_PK[~decided_P] = w_PK[~decided_P]
        moved = (chosen_PK - w_PK).abs().max()
        w_PK, current_P = chosen_PK, best_P
        if moved < 1e-10:
            break
    return w_PK


def sparse_inputs(picked_NCK: Float[Tensor, "N C K"]) -> Float[Tensor, "C K N J"]:
    """For each letter and k, its top-k latents' activations padded with zeros to max_k, plus a 1.

    ``picked_NCK`` holds each sample's activations of every letter's ranked latents.
    """
    n, c, k = picked_NCK.shape
    keep_KK = torch.ones(k, k, device=picked_NCK.device).tril()  # row k-1 keeps the first k
    x_CKNJ = picked_NCK.permute(1, 0, 2)[:, None, :, :] * keep_KK[None, :, None, :]
    ones_CKN1 = torch.ones(c, k, n, 1, device=picked_NCK.device)
    return torch.cat([x_CKNJ, ones_CKN1], dim=-1)


def k_sparse_f1(
    train_picked_NCK: Float[Tensor, "N C K"],
    train_labels_N: Int[Tensor, " N"],
    test_picked_TCK: Float[Tensor, "T C K"],
    test_labels_T: Int[Tensor, " T"],
) -> Float[Tensor, "C K"]:
    """Test F1 of the probe refit on each letter's top k latents, k = 1..max_k."""
    n, c, k = train_picked_NCK.shape
    f1_CK = torch.zeros(c, k)
    train_x = sparse_inputs(train_picked_NCK)
    test_x = sparse_inputs(test_picked_TCK)
    letters_C = torch.arange(c, device=train_labels_N.device)
    # all letters' fits in one Newton solve, in chunks of letters that keep the inputs small
    step = max(1, FIT_ELEMENTS // (k * n * (k + 1)))
    for start in range(0, c, step):
        chunk = slice(start, min(start + step, c))
        size = chunk.stop - start
        target_CN = train_labels_N[None, :] == letters_C[chunk, None]
        w_PJ = fit_balanced_logistic(
            train_x[chunk].reshape(size * k, n, k + 1), target_CN.repeat_interleave(k, dim=0)
        )
        scores_CKT = torch.einsum("cktj,ckj->ckt", test_x[chunk].double(), w_PJ.view(size, k, -1))
        for offset, letter in enumerate(range(start, chunk.stop)):
            truth_TK = (test_labels_T == letter)[:, None].expand(-1, k)
            f1_CK[letter] = f1_columns((scores_CKT[offset] > 0).T, truth_TK).cpu()
    return f1_CK


def main_latents(f1_K: Float[Tensor, " K"], ranking_K: Int[Tensor, " K"], jump: float) -> list[int]:
    """SAEBench's F1-jump rule: accept k while F1 beats the last accepted F1 by more than ``jump``."""
    best = -100.0
    accepted: list[int] = []
    for k, f1 in enumerate(f1_K.tolist(), start=1):
        if f1 > best + jump:
            best = f1
            accepted = ranking_K[:k].tolist()
        else:
            break
    return accepted


def k_sparse_probing(
    train_picked_NCK: Float[Tensor, "N C K"],
    train_labels_N: Int[Tensor, " N"],
    test_picked_TCK: Float[Tensor, "T C K"],
    test_labels_T: Int[Tensor, " T"],
    ranking_CK: Int[Tensor, "C K"],
    jump: float,
) -> KSparseResult:
    """F1 against k for every letter, and each letter's main latents by the jump rule.

    ``*_picked`` hold the activations of ``ranking_CK``'s latents (``latents[:, ranking_CK]``).
    """
    f1_CK = k_sparse_f1(train_picked_NCK, train_labels_N, test_picked_TCK, test_labels_T)
    ranking_CK = ranking_CK.cpu()
    mains = [main_latents(f1_CK[c], ranking_CK[c], jump) for c in range(ranking_CK.shape[0])]
    return KSparseResult(ranking_CK, f1_CK, mains)
