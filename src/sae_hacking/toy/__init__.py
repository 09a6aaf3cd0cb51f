"""Synthetic hierarchical data with known features, toy SAE architectures, ground-truth metrics."""
