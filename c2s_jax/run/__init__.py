"""What every run in a workdir shares, training and GRPO alike: the workdir's lock, its
checkpoints, SIGTERM handling and the finished run's export and result."""
