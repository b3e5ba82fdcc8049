"""The README's main job on the embedded data."""

import json

import pytest

from c2s_jax.demo import run_data_stage, run_main_job


def test_data_stage_runs_end_to_end(tmp_path, capsys):
    figures = run_data_stage(str(tmp_path))
    assert figures["n_cells"] == 700
    assert 0.85 < figures["fit"].r2 < 1 and figures["fit"].pearson > 0.9
    assert figures["median_pearson"] > 0.9
    for name in (
        "pbmc68k_counts.h5ad",
        "pbmc68k_sentences.parquet",
        "pbmc68k_sentences.meta.json",
        "inverse_fit.png",
    ):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "inverse_fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "reconstruction from sentences" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.integration
def test_main_job_trains_and_resumes(tmp_path, capsys):
    short = (
        "train.steps=4",
        "data.seq_len=256",
        "data.batch_size=4",
        "data.eval_batches=1",
        "train.log_every=2",
        "train.eval_every=4",
        "train.checkpoint_every=2",
    )
    first = run_main_job(str(tmp_path), short, evaluate=False)["train"]
    assert first.step == 4 and first.eval_task_loss
    assert (tmp_path / "corpus" / "corpus.json").exists()
    assert "results: " in capsys.readouterr().out
    resumed = run_main_job(str(tmp_path), (*short, "train.steps=6"), evaluate=False)["train"]
    assert resumed.step == 6
    lines = (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if '"train"' in line] == [2, 4, 6]


def test_the_goal_line_reads_the_generation_accuracy_against_the_goal():
    from c2s_jax.demo import GOAL_ACCURACY, goal_line

    def evaluation(accuracy):
        methods = {
            "model (generation)": {"accuracy": accuracy, "ci95": [accuracy - 0.1, accuracy + 0.1]},
            "majority label": {"accuracy": 0.343, "ci95": [0.24, 0.46]},
        }
        return {"annotation": {"cell_type_annotation": {"methods": methods}}}

    met = goal_line(evaluation(GOAL_ACCURACY + 0.05))
    assert met.endswith("met (majority label 0.343)") and "NOT" not in met
    assert "[0.55, 0.75]" in met
    assert "NOT met" in goal_line(evaluation(GOAL_ACCURACY - 0.01))
