"""Reading a sweep's results.jsonl: partial last lines, bad fields, per-task losses."""

import json

import numpy as np
import pytest

from c2s_jax.errors import InputError
from c2s_jax.scaling import law
from tests.scaling.conftest import record, write_results


def _records(n=4):
    return [record(f"r{i}", 1e6 * 10**i, 1e9, 3.0 - 0.2 * i) for i in range(n)]


def test_reads_every_field(tmp_path):
    path = write_results(tmp_path / "results.jsonl", _records())
    points = law.read_results(path)
    assert [p.name for p in points] == ["r0", "r1", "r2", "r3"]
    assert points[1].n_params == 1e7 and points[1].n_params_total == 1.3e7
    assert points[2].flops == 6.0 * 1e8 * 1e9
    assert points[3].task_loss["qa"] == pytest.approx(2.4 * 0.9)
    assert points[0].source == f"{path}, line 1"
    np.testing.assert_allclose(law.target_losses(points), [3.0, 2.8, 2.6, 2.4])
    np.testing.assert_allclose(law.target_losses(points, "qa"), [2.7, 2.52, 2.34, 2.16])


def test_a_partial_last_line_is_skipped_with_a_warning_naming_it(tmp_path):
    path = write_results(tmp_path / "results.jsonl", _records(), tail='{"name": "r4", "n_par')
    with pytest.warns(UserWarning, match=r"results.jsonl, line 5: incomplete last line"):
        points = law.read_results(path)
    assert len(points) == 4


def test_a_broken_line_before_the_last_is_an_error(tmp_path):
    lines = [json.dumps(r) for r in _records()]
    lines[1] = lines[1][:20]
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"results.jsonl, line 2: not a JSON object"):
        law.read_results(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"loss": None}, "field 'loss' must be a finite number"),
        ({"tokens": "1e9"}, "field 'tokens' must be a finite number"),
        ({"n_params": True}, "field 'n_params' must be a finite number"),
        ({"flops": -1.0}, "field 'flops' must be positive"),
        ({"loss": float("nan")}, "field 'loss' must be a finite number"),
        ({"task_loss": {"qa": 0}}, "field 'task_loss.qa' must be positive"),
        ({"task_loss": [1.0]}, "field 'task_loss' must be an object"),
        ({"name": 3}, "field 'name' must be a string"),
    ],
)
def test_a_bad_field_names_file_line_and_field(tmp_path, change, message):
    records = _records()
    records[2].update(change)
    path = write_results(tmp_path / "results.jsonl", records)
    with pytest.raises(InputError, match=rf"results.jsonl, line 3: {message}"):
        law.read_results(path)


def test_a_missing_field_is_named(tmp_path):
    records = _records()
    del records[0]["tokens"]
    path = write_results(tmp_path / "results.jsonl", records)
    with pytest.raises(InputError, match=r"line 1: field 'tokens' is missing"):
        law.read_results(path)


def test_points_typed_from_a_table_need_only_what_the_fit_reads(tmp_path):
    path = tmp_path / "paper.jsonl"
    path.write_text(
        '{"n_params": 1e7, "tokens": 2e9, "loss": 3.1}\n'
        '{"n_params": 1e8, "tokens": 2e9, "loss": 2.8, "name": "100M"}'  # no final newline
    )
    first, second = law.read_results(path)
    assert (first.name, second.name) == ("line 1", "100M")
    assert first.n_params_total == 1e7 and first.flops == 6 * 1e7 * 2e9
    assert first.task_loss == {} and second.loss == 2.8


def test_a_task_that_a_point_lacks_is_named_with_the_tasks_it_has(tmp_path):
    points = law.read_results(write_results(tmp_path / "results.jsonl", _records()))
    with pytest.raises(InputError, match=r"line 1: .*no task 'tissue' .*'cell_type_annotation'"):
        law.target_losses(points, "tissue")


def test_missing_or_empty_files_are_named(tmp_path):
    with pytest.raises(InputError, match="no such results file"):
        law.read_results(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="empty.jsonl: holds no results"):
        law.read_results(tmp_path / "empty.jsonl")
