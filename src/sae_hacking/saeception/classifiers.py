"""Classifiers that expose a hidden activation: the digits MLP and a language model with a linear head.

``forward_batch(examples)`` returns the hidden activation ``h_BM`` the SAE reads and the logits.
``trained_state()`` holds only what training changes, so a cycle's checkpoint of a language model
is its fine-tuned blocks and head, not a copy of the whole model.
"""

import copy
import math
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor, nn

from sae_hacking.config import ConfigError


@runtime_checkable
class Classifier(Protocol):
    """What the cycle runner needs of a classifier (an ``nn.Module``)."""

    hidden_dim: int

    def forward_batch(self, examples: Any) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B L"]]: ...

    def trained_state(self) -> dict[str, Tensor]: ...

    def load_trained_state(self, state: dict[str, Tensor]) -> None: ...


def init_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's default initialisation (uniform within 1/sqrt(fan_in)), drawn from ``generator``."""
    bound = 1 / math.sqrt(layer.in_features)
    with torch.no_grad():
        for param in (layer.weight, layer.bias):
            values = torch.rand(param.shape, generator=generator, device=generator.device)
            param.copy_((2 * values - 1).to(param.device) * bound)


MLP_HIDDEN = 16


class MLPClassifier(nn.Module):
    """inputs -> 16 -> 16 -> classes with ReLUs; the hidden activation is layer 1's or 2's output."""

    def __init__(
        self,
        inputs: int,
        classes: int,
        layer: int,
        generator: torch.Generator,
        hidden: int = MLP_HIDDEN,
    ) -> None:
        super().__init__()
        self.hidden_dim = hidden
        self.layer = layer
        self.fc1 = nn.Linear(inputs, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, classes)
        for linear in (self.fc1, self.fc2, self.head):
            init_linear(linear, generator)

    def forward_batch(
        self, examples: Float[Tensor, "B I"]
    ) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B L"]]:
        x_BI = examples.to(self.fc1.weight.device)
        first_BM = torch.relu(self.fc1(x_BI))
        second_BM = torch.relu(self.fc2(first_BM))
        return (first_BM if self.layer == 1 else second_BM), self.head(second_BM)

    def trained_state(self) -> dict[str, Tensor]:
        return dict(self.state_dict())

    def load_trained_state(self, state: dict[str, Tensor]) -> None:
        self.load_state_dict(state)


def last_block_hook(n_layers: int) -> str:
    return f"blocks.{n_layers - 1}.hook_resid_post"


def check_hook(cfg: Any, hook: str, model_name: str) -> int:
    """The hidden width at a block hook of the model, or a one-line error naming --layer."""
    from sae_hacking.llm.models import hook_layer, hook_width

    width = hook_width(cfg, hook)
    if width is None or hook_layer(hook) < 0:
        raise ConfigError(
            "layer",
            f"'{model_name}' has no block hook '{hook}' (it has blocks 0-{cfg.n_layers - 1}; "
            f"e.g. {last_block_hook(cfg.n_layers)})",
        )
    return width


class LanguageClassifier(nn.Module):
    """A transformer-lens model read at one hook on the last real token, and a linear head on it.

    Texts are left-padded, so the last position is every text's last real token. The model runs
    only up to the hook's block. ``trained_blocks`` None fine-tunes the embeddings and every block
    up to the hook; N fine-tunes only the last N of them (the rest stay frozen and unsaved).
    """

    def __init__(
        self,
        model: Any,
        hook: str,
        classes: int,
        generator: torch.Generator,
        max_tokens: int,
        trained_blocks: int | None,
    ) -> None:
        super().__init__()
        from sae_hacking.llm.models import hook_layer, hook_width

        self.model = model
        self.hook = hook
        self.max_tokens = max_tokens
        self.block = hook_layer(hook)
        width = hook_width(model.cfg, hook)
        assert width is not None, hook
        self.hidden_dim = width
        self.head = nn.Linear(width, classes).to(model.cfg.device)
        init_linear(self.head, generator)
        first = 0 if trained_blocks is None else max(0, self.block - trained_blocks + 1)
        for name, param in self.model.named_parameters():
            param.requires_grad_(self._is_trained(name, first, trained_blocks is None))
        if model.tokenizer.pad_token is None:
            model.tokenizer.pad_token = model.tokenizer.eos_token

    def _is_trained(self, name: str, first: int, with_embeddings: bool) -> bool:
        if name.startswith("blocks."):
            return first <= int(name.split(".")[1]) <= self.block
        return with_embeddings and name.startswith(("embed", "pos_embed"))

    def forward_batch(
        self, examples: list[str]
    ) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B L"]]:
        from sae_hacking.llm.corpus import tokenize_batch
        from sae_hacking.llm.models import stop_layer

        batch = tokenize_batch(examples, self.model.tokenizer, self.max_tokens)
        device = self.head.weight.device
        captured: dict[str, Tensor] = {}

        def keep(act: Tensor, hook: Any) -> Tensor:
            captured["act"] = act
            return act

        with self.model.hooks(fwd_hooks=[(self.hook, keep)]):
            self.model(
                batch.tokens_BS.to(device),
                attention_mask=batch.attention_mask_BS.to(device),
                stop_at_layer=stop_layer(self.hook),
            )
        act = captured["act"]
        h_BM = act[:, -1].reshape(act.shape[0], -1)
        return h_BM, self.head(h_BM)

    def trained_state(self) -> dict[str, Tensor]:
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {n: t for n, t in self.state_dict().items() if n in names}

    def load_trained_state(self, state: dict[str, Tensor]) -> None:
        missing = set(self.trained_state()) - set(state)
        if missing:
            raise ValueError(f"checkpoint lacks {sorted(missing)[:3]}")
        self.load_state_dict(state, strict=False)


class ClassifierFactory:
    """Fresh classifiers of one run: initialised from a generator, or from a saved trained state."""

    def __init__(
        self,
        kind: str,
        classes: int,
        device: torch.device,
        *,
        inputs: int = 0,
        layer: int = 2,
        model: Any = None,
        hook: str = "",
        max_tokens: int = 128,
        trained_blocks: int | None = None,
    ) -> None:
        self.kind = kind
        self.classes = classes
        self.inputs = inputs
        self.layer = layer
        self.base_model = model
        self.hook = hook
        self.max_tokens = max_tokens
        self.trained_blocks = trained_blocks
        self.device = device

    @property
    def hidden_dim(self) -> int:
        """The width of the hidden activation the run's SAEs read."""
        return MLP_HIDDEN if self.kind == "mlp" else int(self.base_model.cfg.d_model)

    def build(self, generator: torch.Generator) -> nn.Module:
        """A classifier at its initialisation (the head, and the MLP, drawn from ``generator``)."""
        if self.kind == "mlp":
            return MLPClassifier(self.inputs, self.classes, self.layer, generator).to(self.device)
        return LanguageClassifier(
            copy.deepcopy(self.base_model),
            self.hook,
            self.classes,
            generator,
            self.max_tokens,
            self.trained_blocks,
        )
