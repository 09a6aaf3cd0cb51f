"""The toy training loop, learning-rate schedules, checkpoints and the run log."""
