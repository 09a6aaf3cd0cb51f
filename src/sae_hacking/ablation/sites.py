"""Where an ablation starts and where it is read: hook sites and the partial forward between them.

Supported hooks are ``hook_resid_pre``, ``hook_attn_out``, ``hook_mlp_out`` and ``hook_resid_post``
of any block. Inside block L the order is resid_pre -> attn_out -> mlp_out -> resid_post, and
resid_post[L] is the same point as resid_pre[L+1].
"""

import re
from dataclasses import dataclass
from typing import Literal

from sae_hacking.errors import UserInputError

SiteKind = Literal["resid_pre", "attn_out", "mlp_out", "resid_post"]
_ORDER: dict[str, int] = {"resid_pre": 0, "attn_out": 1, "mlp_out": 2, "resid_post": 4}
_SITE = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|attn_out|mlp_out|resid_post)$")


@dataclass(frozen=True)
class HookSite:
    """A supported hook: its block and kind."""

    layer: int
    kind: SiteKind

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.hook_{self.kind}"

    @property
    def point(self) -> int:
        """Position in the forward pass; resid_post[L] and resid_pre[L+1] share one."""
        return 4 * self.layer + _ORDER[self.kind]


def parse_site(hook_name: str, flag: str) -> HookSite:
    """The site of a supported hook; anything else is refused with the list of what is supported."""
    match = _SITE.match(hook_name)
    if match is None:
        raise UserInputError(
            flag,
            f"the SAE reads '{hook_name}'; selective ablation supports blocks.L.hook_resid_pre, "
            "hook_attn_out, hook_mlp_out and hook_resid_post",
        )
    layer, kind = match.groups()
    return HookSite(int(layer), kind)  # pyright: ignore[reportArgumentType]


@dataclass(frozen=True)
class AblationPlan:
    """How to run the ablated batch: from which block, with the change applied where, to which block.

    An ablation at resid_post[L] or mlp_out[L] is a shift of the stream entering block L+1
    (resid_post = resid_mid + mlp_out), so those start one block later than attn_out/resid_pre.
    """

    ablator: HookSite
    reader: HookSite

    def __post_init__(self) -> None:
        if self.reader.point <= self.ablator.point:
            raise UserInputError(
                "--reader-sae-id",
                f"the reader reads '{self.reader.name}', which is not after the ablator's "
                f"'{self.ablator.name}'; pick a reader later in the model",
            )

    @property
    def start_layer(self) -> int:
        """The first block the ablated batch runs."""
        if self.ablator.kind in ("resid_post", "mlp_out"):
            return self.ablator.layer + 1
        return self.ablator.layer

    @property
    def start_stream_hook(self) -> str:
        """The clean hook whose value is the residual stream entering ``start_layer``."""
        if self.ablator.kind in ("resid_post", "mlp_out"):
            return f"blocks.{self.ablator.layer}.hook_resid_post"
        return f"blocks.{self.ablator.layer}.hook_resid_pre"

    @property
    def shifts_stream(self) -> bool:
        """True when the ablation is added to the starting stream; else it is hooked at attn_out."""
        return self.ablator.kind != "attn_out"

    @property
    def stop_layer(self) -> int:
        """``stop_at_layer`` that has computed the reader's hook."""
        return self.reader.layer if self.reader.kind == "resid_pre" else self.reader.layer + 1

    @property
    def reader_is_stream(self) -> bool:
        """True when the reader's value is the stream a partial forward returns."""
        return self.reader.kind in ("resid_pre", "resid_post")


def plan_for(ablator_hook: str, reader_hook: str) -> AblationPlan:
    """Check both hooks and their order, and say how the batched ablation runs."""
    return AblationPlan(
        parse_site(ablator_hook, "--ablator-sae-id"), parse_site(reader_hook, "--reader-sae-id")
    )
