"""Training one toy SAE and scoring it (train_topk_sae_toy.py)."""
