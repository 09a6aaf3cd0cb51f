"""Training and scoring SAEs on sae-lens synthetic models (SynthSAEBench)."""
