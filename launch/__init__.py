"""Cloud TPU launcher: create a TPU VM or queued resource, install the project on every
worker, bring data, run `c2s train` / `c2s grpo` on all workers, stream logs, tear down.

Run it from the repository root as `python -m launch SUBCOMMAND ...`; see launch/README.md.
Every subcommand takes `--dry-run`, which prints the commands instead of running them.
"""
