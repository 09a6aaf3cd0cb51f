"""Where the toy hunt's activations come from: a tree preset or spec, the misleading case, or a
sae-lens synthetic model (SynthSAEBench and its kin, ``toy/data/synthetic_models.py``).

The misleading case is built so that ablator decoder cosines point the wrong way. Each of
``MISLEADING_GATES`` hidden gates fires one of two exclusive parents, and every parent has three
loud children (magnitude ``CHILD_MAGNITUDE``, the parent 1):

- an absorbing child latent's decoder is mostly its child's own direction, so its cosine with the
  parent latent is about 1 / sqrt(1 + 3^2) = 0.32, below the usual bar;
- a parent's second and third children point at cosine ``LOOKALIKE_COSINE`` with its first (near
  synonyms), so their latents' decoders are closer (about 0.64) than any absorbed pair's, though
  they fire independently and often together;
- the two parents of a gate and their families never fire together, so co-occurrence alone
  calls every cross pair of a gate.

With ``--downstream parents`` the later layer reads only the parents (as the planted language
model's copy head moves only the letter), so an absorber's ablation moves its parent's readout
exactly as the parent latent's ablation does, while its decoder hardly resembles the parent's.
"""

import math

import torch

from sae_hacking.toy.data.synthetic import SyntheticSource
from sae_hacking.toy.data.tree import TreeSource, compile_forest, feature_directions
from sae_hacking.toy.data.tree_spec import Forest, TreeNode, load_forest
from sae_hacking.toy.experiments.hunt.config import MISLEADING, HuntConfig

MISLEADING_GATES = 10
CHILD_MAGNITUDE = 3.0
LOOKALIKE_COSINE = 0.6
# Features of one parent, depth first: the parent, then its three children.
_PER_PARENT = 4


def misleading_forest() -> Forest:
    """Hidden gates (p 0.32), each firing exactly one of two parents; three loud children each."""
    children = tuple(TreeNode(p=0.25, mean=CHILD_MAGNITUDE) for _ in range(3))
    parent = TreeNode(p=0.5, children=children)
    gate = TreeNode(p=0.32, children=(parent, parent), exclusive=True, read_out=False)
    return Forest(tuple(gate for _ in range(MISLEADING_GATES)))


def lookalike_children() -> list[tuple[int, int]]:
    """(first child, look-alike child) feature pairs of the misleading case: each parent's second
    and third child with its first."""
    parents = range(0, 2 * MISLEADING_GATES * _PER_PARENT, _PER_PARENT)
    return [(p + 1, p + j) for p in parents for j in (2, 3)]


def misleading_source(model_dim: int, generator: torch.Generator) -> TreeSource:
    """The misleading case: orthonormal directions, then each look-alike child bent towards its
    first sibling to ``LOOKALIKE_COSINE``."""
    tree = compile_forest(misleading_forest(), generator.device)
    if tree.num_features > model_dim:
        raise ValueError(f"the misleading case needs --model-dim >= {tree.num_features}")
    features_NM = feature_directions(tree.num_features, model_dim, generator)
    bent_NM = features_NM.clone()
    side = math.sqrt(1.0 - LOOKALIKE_COSINE**2)
    for first, lookalike in lookalike_children():
        bent_NM[lookalike] = LOOKALIKE_COSINE * features_NM[first] + side * features_NM[lookalike]
    return TreeSource(tree, bent_NM)


def hunt_source(config: HuntConfig, generator: torch.Generator) -> TreeSource | SyntheticSource:
    """The source named by ``--synthetic-model`` or ``--hierarchy``: a synthetic model (its own
    seed: ``generator`` is not drawn from), the misleading case, a tree preset or a spec file."""
    if config.synthetic_model is not None:
        return synthetic_source(config, generator.device)
    if config.hierarchy == MISLEADING:
        return misleading_source(config.model_dim, generator)
    return TreeSource.build(load_forest(config.hierarchy), config.model_dim, generator)


def synthetic_source(config: HuntConfig, device: torch.device) -> SyntheticSource:
    """The synthetic model's data through the training script's sampler choice: the fixed-shape
    sampler on CUDA (no host sync per batch), the exact one elsewhere (faster on a CPU)."""
    from sae_hacking.toy.data.synthetic_models import load_synthetic_model
    from sae_hacking.toy.experiments.synthetic.run import make_source

    assert config.synthetic_model is not None
    config.check_given_beside_model(None)  # before a model is built or downloaded
    model = load_synthetic_model(config.synthetic_model, str(device), flag="--synthetic-model")
    source = make_source(model, device, "auto")
    config.check_given_beside_model(int(source.W_NM.shape[1]))
    return source
