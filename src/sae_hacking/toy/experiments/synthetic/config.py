"""Options of ``train_synthetic_sae.py``: imports nothing heavy, so --help answers at once."""

from dataclasses import dataclass
from pathlib import Path

from sae_hacking.config import (
    ConfigError,
    check_options,
    count_up_to,
    device_option,
    each,
    one_of,
    option,
    output_dir_option,
    positive,
    threads_option,
)
from sae_hacking.errors import UserInputError
from sae_hacking.toy.data.synthetic_models import check_model_source, describe_sources

ARCHITECTURES = ("batchtopk", "matryoshka-batchtopk", "jumprelu", "topk", "l1")
SAMPLERS = ("auto", "exact", "fixed-shape")
# A starting point, not tuned: an L1 SAE's L0 follows its coefficient (the README's table gives
# the L0 it reached on synth-sae-bench-1k); sweep it to match another SAE's L0.
L1_COEFFICIENT = 0.3
# Beyond any sense: 1e12 samples are 20 days at SynthSAEBench's 16k-feature pace on an H100.
MAX_SAMPLES = 10**12
BYTES_PER_FLOAT = 4


@dataclass(frozen=True)
class SyntheticTrainConfig:
    """Train an SAE on a sae-lens synthetic model (SynthSAEBench) and score it against the truth."""

    model: str = option(
        "synth-sae-bench-1k",
        f"the synthetic model: {describe_sources()}",
    )
    architecture: str = option(
        "batchtopk", f"SAE: {', '.join(ARCHITECTURES)}", check=one_of(*ARCHITECTURES)
    )
    width: int | None = option(
        None,
        "SAE latents",
        check=positive,
        default_text="the preset's (4096 for 16k), else a quarter of the features",
    )
    l0: float | None = option(
        None,
        "k of the top-k SAEs, or the JumpReLU's target L0 (the L1 SAE has none)",
        check=positive,
        default_text="the true L0 of the width most frequent features (25 for 16k)",
    )
    l1_coefficient: float = option(
        L1_COEFFICIENT,
        "weight of the L1 SAE's penalty, sum of activations times decoder norms",
        check=positive,
    )
    matryoshka_widths: tuple[int, ...] | None = option(
        None,
        "Matryoshka prefix widths, comma-separated, ending at the width",
        check=each(positive),
        default_text="width/32, width/8, width/2, width",
    )
    samples: int = option(
        5_000_000, "training samples", check=count_up_to(MAX_SAMPLES, "weeks on any GPU")
    )
    batch_size: int = option(
        1024, "samples per step", check=count_up_to(MAX_SAMPLES, "weeks on any GPU")
    )
    lr: float = option(3e-4, "Adam learning rate (constant, as SynthSAEBench)", check=positive)
    eval_samples: int = option(
        100_000, "samples for the final SynthSAEBench metrics", check=positive
    )
    absorption_samples: int = option(
        50_000, "samples for absorption against the hierarchy", check=positive
    )
    log_every: int | None = option(
        None, "steps between training evaluations", check=positive, default_text="steps/20"
    )
    sampler: str = option(
        "auto",
        "training data sampler: exact (children only under fired parents; sizes vary, so each "
        "step syncs) or fixed-shape (a fixed number of slots per sample: no host sync, CUDA "
        "graphs); auto: fixed-shape on CUDA, exact elsewhere",
        check=one_of(*SAMPLERS),
    )
    cuda_graphs: bool = option(
        False, "replay each training step as one CUDA graph (CUDA with the fixed-shape sampler)"
    )
    save_model: bool = option(True, "save the synthetic model beside the SAE (reload with --model)")
    seed: int = option(0, "seed of the SAE and the batches (the model keeps its own)")
    device: str = device_option()
    threads: int = threads_option()
    output_dir: Path | None = output_dir_option()

    def __post_init__(self) -> None:
        check_options(self)
        try:
            check_model_source(self.model, "model")
        except UserInputError as error:
            raise ConfigError("model", str(error).split(": ", 1)[-1]) from error
        if self.samples < self.batch_size:
            raise ConfigError("samples", f"{self.samples} is fewer than one batch")
        widths = self.matryoshka_widths
        if widths is not None and self.architecture != "matryoshka-batchtopk":
            raise ConfigError("matryoshka_widths", "only for --architecture matryoshka-batchtopk")
        if self.l1_coefficient != L1_COEFFICIENT and self.architecture != "l1":
            raise ConfigError("l1_coefficient", "only for --architecture l1")
        if self.cuda_graphs and self.sampler == "exact":
            raise ConfigError("cuda_graphs", "needs --sampler fixed-shape or auto")
        if widths and self.width is not None and widths[-1] != self.width:
            raise ConfigError("matryoshka_widths", f"must end at the width {self.width}")

    @property
    def steps(self) -> int:
        return self.samples // self.batch_size

    def memory_estimate(self, model_dim: int, features: int, width: int) -> tuple[int, str]:
        """Peak bytes of training (float32, an estimate) and the size option to lower first: the
        SAE four times (weights, gradients, Adam's two moments), and a batch's inputs, feature
        draws, pre-activations and their gradients."""
        weights = 4 * (2 * width * model_dim + width + model_dim)
        floats = weights + self.batch_size * (2 * model_dim + features + 3 * width)
        sizes = {"width": width / 4096, "batch_size": self.batch_size / 1024}
        return BYTES_PER_FLOAT * floats, max(sizes, key=sizes.__getitem__)
