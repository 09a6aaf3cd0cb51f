"""Whole toy experiments behind the toy scripts: training, hedging versus absorption, the hunt."""
