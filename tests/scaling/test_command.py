"""`c2s scaling fit`: the JSON object, the table, the plot and the errors."""

import json

import numpy as np
import pytest
from matplotlib import image

from c2s_jax.cli import main
from tests.scaling.conftest import TRUTH, record, true_loss, write_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _json(capsys, *argv) -> dict:
    assert main(["scaling", "fit", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    return json.loads(out)


def test_json_of_the_two_variable_fit_with_a_budget(grid_results, capsys, tmp_path):
    plot = tmp_path / "two.png"
    report = _json(
        capsys,
        grid_results,
        "--two-variable",
        "--bootstrap",
        "8",
        "--budget",
        "1e21",
        "--plot",
        str(plot),
    )
    for name in ("E", "A", "alpha", "B", "beta"):
        assert report[name] == pytest.approx(TRUTH[name], rel=0.5)
        low, high = report["ci"][name]
        assert low <= report[name] <= high
    assert report["n_points"] == 42
    assert report["ci"]["level"] == 0.95
    optimal = report["compute_optimal"]
    assert 6 * optimal["n_params"] * optimal["tokens"] == pytest.approx(1e21)
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    assert image.imread(plot).ndim == 3


def test_json_of_a_task_fit_with_plot(tmp_path, capsys):
    n_params = np.geomspace(1e6, 1e10, 8)
    records = [record(f"r{i}", n, 2e10, true_loss(n)) for i, n in enumerate(n_params)]
    path = write_results(tmp_path / "results.jsonl", records)
    plot = tmp_path / "one.png"
    report = _json(capsys, path, "--task", "qa", "--bootstrap", "0", "--plot", str(plot))
    assert {"E", "A", "alpha", "n_points", "ci"} <= set(report)
    assert "B" not in report and report["ci"] is None
    # task_loss.qa is 0.9 x loss: E and A scale by 0.9, the exponent does not move.
    assert report["alpha"] == pytest.approx(TRUTH["alpha"], rel=1e-3)
    assert report["E"] == pytest.approx(0.9 * TRUTH["E"], rel=1e-3)
    assert report["loss"] == "task_loss.qa"
    assert set(report["compute_law"]) >= {"E", "A", "alpha"}
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = image.imread(plot).shape
    assert width > height > 100


def test_the_table_shows_constants_and_intervals(grid_results, capsys):
    assert main(["scaling", "fit", grid_results, "--bootstrap", "3", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "fitted to 42 points" in out
    assert "95% intervals from 3 bootstrap resamples (seed 2)" in out
    assert out.count("[") == 3  # E, A, alpha with their intervals


def test_as_many_points_as_constants_have_no_intervals_and_say_why(tmp_path, capsys):
    # Three sizes, three constants: L(N) passes through every point, and every resample
    # that still has three sizes is the data itself.
    sizes = [1e6, 1e7, 1e8, 1e8]
    records = [record(f"r{i}", n, 1e9, true_loss(n)) for i, n in enumerate(sizes)]
    path = write_results(tmp_path / "results.jsonl", records)
    report = _json(capsys, path, "--bootstrap", "20")
    assert report["ci"] is None
    assert report["ci_undefined"].startswith("3 distinct points for 3 constants")
    assert main(["scaling", "fit", path, "--bootstrap", "20"]) == 0
    assert "no intervals: 3 distinct points for 3 constants" in capsys.readouterr().out


def test_a_partial_last_line_warns_and_the_fit_goes_on(tmp_path, capsys):
    records = [record(f"r{i}", n, 1e9, true_loss(n)) for i, n in enumerate([1e6, 1e7, 1e8, 1e9])]
    path = write_results(tmp_path / "results.jsonl", records, tail='{"name": "r4"')
    assert main(["scaling", "fit", path, "--bootstrap", "0", "--json"]) == 0
    captured = capsys.readouterr()
    assert "line 5: incomplete last line skipped" in captured.err
    assert json.loads(captured.out)["n_points"] == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budget", "1e20"], "--budget needs --two-variable"),
        (["--two-variable"], "B*D^-beta needs at least 5 points, got 2"),
        ([], "needs at least 3 points, got 2"),
        (["--task", "tissue"], "no task 'tissue'"),
    ],
)
def test_errors_name_what_is_needed(tmp_path, capsys, argv, message):
    records = [record("a", 1e6, 1e9, 3.0), record("b", 1e7, 1e9, 2.5)]
    path = write_results(tmp_path / "results.jsonl", records)
    assert main(["scaling", "fit", path, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("c2s scaling: error:")
    assert message in err
