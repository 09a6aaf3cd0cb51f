"""Test-wide settings: offline hubs, one torch thread, seeded randomness."""

import os

# Set before anything imports huggingface_hub, so an accidental hub call fails at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

import random

import numpy as np
import pytest
import torch

# On 2 cores, two intra-op threads made small ops 10-100x slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
