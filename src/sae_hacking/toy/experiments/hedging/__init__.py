"""Hedging versus absorption on tree hierarchies (toy_hedging_absorption.py)."""
