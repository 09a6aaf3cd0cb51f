"""Selective ablation: zero one ablator latent, keep the error term, record the reader's change."""
