"""Scoring a hunt's ranked pairs against known absorption (score_hunt.py)."""
