"""Ground-truth metrics: recovery, siblings, absorption, hedging, probing, activity."""
