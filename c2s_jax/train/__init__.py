"""Training: the input pipeline and packing, loss, optimizer, state, step, and the training
job that run/runner.py drives."""
