"""The first-letter absorption evaluation ("A is for Absorption", SAEBench 0.6) on language models."""
