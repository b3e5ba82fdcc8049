"""Sweeps: one base experiment, axes of overrides, every combination trained and recorded.

spec.py expands a sweep file into named members; local.py trains them one after another
on this machine and tpu.py hands them to the Cloud TPU launcher; both append one record per
finished member to DIR/results.jsonl (results.py), the input of the scaling-law fits.
"""
