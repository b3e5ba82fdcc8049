"""On 8 virtual devices (data x fsdp x tensor): AdamW's moments are sharded exactly like
their parameters, and no buffer of the compiled train step holds the whole batch."""

import json
import subprocess
import sys

from tests.support.training import ROOT
from tests.support.virtual_devices import virtual_device_env


def test_moments_follow_their_parameters_and_each_device_holds_its_rows():
    out = subprocess.run(
        [sys.executable, "-m", "tests.train.sharding_worker"],
        cwd=ROOT,
        env=virtual_device_env(8),
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert (report["devices"], report["batch_devices"]) == (8, 4)
    # Two moments per parameter, each with its parameter's sharding; most parameters are
    # sharded at all (norm scales of 64 features split over fsdp too).
    pairs = report["moment_and_param_specs"]
    assert len(pairs) == 2 * report["params"]
    assert [moment for moment, _ in pairs] == [param for _, param in pairs]
    assert report["sharded_params"] == report["params"]
    # The step's buffers hold each device's 16 / 4 rows, never all 16.
    assert report["global_rows"] == 0
    assert report["local_rows"] > 0
