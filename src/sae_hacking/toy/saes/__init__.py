"""Toy SAE architectures: top-k, hierarchical, Matryoshka, and their shared weights and losses."""
