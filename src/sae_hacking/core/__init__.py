"""Typed, pure tensor functions shared by every script: no disk, no network, no global RNG."""
