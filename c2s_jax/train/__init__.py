"""Training: state, step, optimizer, checkpoints, metrics and the loop."""
