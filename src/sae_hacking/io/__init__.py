"""Result files: atomic writes, tensor bundles with JSON manifests, run directories."""
