"""The sampler on 8 virtual CPU devices (data x fsdp x tensor) gives the single-device result."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.support.virtual_devices import virtual_device_env

ROOT = Path(__file__).resolve().parents[2]


def run_worker(devices: int) -> dict:
    env = virtual_device_env(devices)
    out = subprocess.run(
        [sys.executable, "-m", "tests.inference.sharded_worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_generation_matches_one_device():
    one, eight = run_worker(1), run_worker(8)
    assert (one["devices"], eight["devices"]) == (1, 8)
    for mode in ("greedy", "sampled"):
        np.testing.assert_array_equal(eight[mode]["tokens"], one[mode]["tokens"])
        np.testing.assert_allclose(eight[mode]["logprobs"], one[mode]["logprobs"], atol=1e-4)
