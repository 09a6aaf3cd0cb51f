"""Synthetic data with known features: the original's perturbed children and tree hierarchies."""
