"""The shape letters used in tensor names and jaxtyping annotations across the package.

A tensor's name ends in its shape letters and its annotation uses the same letters:
``acts_BSE: Float[Tensor, "B S E"]``. A letter means the same size everywhere in one function.

1  singleton dimension (for broadcasting)
A  parent features in a synthetic dataset
B  batch
C  child features in a synthetic dataset
D  local: no convention, unique within its function
E  SAE width (latents)
F  reserved for torch.nn.functional, never a dimension
G  a multiple of E
H  SAE children (a multiple of E) in the hierarchical SAE
I  input features of a classifier (pixels of an image)
J  active (sample, feature) entries of a sparse batch of true features
K  k in top-k, or latents ablated per prompt
L  classes (labels) of a classification task
M  model dimension (the activation space an SAE reads)
N  true features of a synthetic dataset
O  slots of a fixed-shape sparse batch (a set number of entries per sample, some empty)
P  packed latent pairs (an upper triangle, flattened)
Q  co-active latent pairs found in one batch of tokens
R  selected rows (a subset of latents)
S  sequence positions
T  tokens, batch and sequence flattened together
U  rank of a low-rank correlation factor
V  vocabulary
W  64-bit words of a bit-packed array
Y  an ablation effect's width: the reader SAE's latents, or d_model for effects read in the reader
   hook's activations (E is the ablator's)
X  ablations run together: the rows of one batched ablation, across prompts
Z  tokens of a context window around one token (a latent's top contexts)
"""

LETTERS: dict[str, str] = {
    "1": "singleton",
    "A": "parent features",
    "B": "batch",
    "C": "child features",
    "D": "local",
    "E": "SAE width",
    "G": "multiple of E",
    "H": "SAE children",
    "I": "classifier input features",
    "J": "active entries",
    "K": "top-k",
    "L": "classes",
    "M": "model dimension",
    "N": "true features",
    "O": "fixed-shape slots",
    "P": "packed pairs",
    "Q": "co-active pairs in a batch",
    "R": "selected rows",
    "S": "sequence",
    "T": "tokens",
    "U": "correlation rank",
    "V": "vocabulary",
    "W": "bit-packed words",
    "X": "ablations run together",
    "Y": "effect width",
    "Z": "context window",
}
