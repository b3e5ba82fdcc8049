"""What every run in a workdir shares, training and GRPO alike: the runner that drives a
job through its steps, the workdir's lock, checkpoints, metrics, SIGTERM handling and the
finished run's export and result."""
