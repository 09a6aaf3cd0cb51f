"""The absorption hunt on planted ground truth (toy_absorption_hunt.py)."""
