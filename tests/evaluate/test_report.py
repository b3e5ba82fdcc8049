"""report.md, metrics.json and the figures from a results dict made by hand: intervals and
notes in the tables, trivial tasks and values within the noise floor marked, and the
generation map's colours, markers, axes and legend."""

import json

import numpy as np
import pytest

from c2s_jax.evaluate import report
from c2s_jax.evaluate.confidence import accuracy_with_interval, reliability_notes
from c2s_jax.evaluate.generation_eval import within_noise_floor


def _method(correct: list[bool], macro_f1: float | None = None) -> dict:
    scores = accuracy_with_interval(np.array(correct))
    return scores if macro_f1 is None else {**scores, "macro_f1": macro_f1}


def _results() -> dict:
    cell_types = ["B cell", "T cell", "B cell", "NK cell"] * 6
    tissue = ["blood"] * 24
    annotation = {
        "cell_type_annotation": {
            "n_cells": 24,
            "n_labels": 3,
            "notes": reliability_notes(cell_types),
            "methods": {"model (likelihood)": _method([True] * 18 + [False] * 6, 0.7)},
            "examples": [{"truth": "B cell", "answer": "B cell."}],
        },
        "tissue_inference": {
            "n_cells": 24,
            "n_labels": 1,
            "notes": reliability_notes(tissue),
            "methods": {"majority label": _method([True] * 24, 1.0)},
            "examples": [],
        },
    }
    qa = {
        "is_expressed": {
            "n_questions": 12,
            "n_options": 2,
            "chance": 0.5,
            "notes": reliability_notes(["yes", "no"] * 6),
            "methods": {
                "model (generation)": _method([True] * 9 + [False] * 3),
                "model (likelihood)": _method([True] * 6 + [False] * 6),
            },
            "examples": [],
        }
    }
    generated = {"scfid[pca2]": 1.5, "n": 5, "mmd[median]": 0.3, "knn_accuracy": 0.2}
    generated |= {"mean_expression_r": 0.95, "rank_deficient": False}
    floor = {"scfid[pca2]": 2.0, "n": 5, "mmd[median]": 0.1, "knn_accuracy": 0.9}
    floor |= {"mean_expression_r": 0.9, "rank_deficient": False}
    generation = {
        "field": "cell_type",
        "conditions": ["B cell", "T cell"],
        "embedders": ["pca2"],
        "pooled": {
            "generated": generated,
            "real (noise floor)": floor,
            "within noise floor": within_noise_floor(generated, floor),
        },
        "per_condition": {
            c: {"n_reference": 3, "generated_r": 0.5, "floor_r": 0.8} | knn
            for c, knn in (("B cell", {"generated_knn": 0.5, "floor_knn": 1.0}),)
        },
        "validity": {"valid_fraction": 1.0, "duplicate_fraction": 0.0},
        "genes_per_cell": 12.0,
        "map": {
            "reference": np.arange(10.0).reshape(5, 2),
            "generated": -np.arange(6.0).reshape(3, 2),
            "reference_labels": np.array(["B cell"] * 3 + ["T cell"] * 2),
            "generated_labels": np.array(["B cell", "T cell", "T cell"]),
            "variance_ratio": np.array([0.231, 0.0549]),
        },
    }
    return {"annotation": annotation, "question_answering": qa, "generation": generation}


def test_within_noise_floor_knows_which_way_is_closer():
    flags = _results()["generation"]["pooled"]["within noise floor"]
    # smaller scFID and larger correlation than real-vs-real: within the floor;
    # larger MMD and smaller kNN accuracy: not
    assert flags == {
        "scfid[pca2]": True,
        "mmd[median]": False,
        "knn_accuracy": False,
        "mean_expression_r": True,
    }


def test_report_shows_intervals_notes_and_the_noise_floor(tmp_path):
    results = _results()
    header = {"model": "m", "dataset": "d"}
    path = report.write_report(tmp_path, header, results, {"perturbation": "no column"})
    text = path.read_text()
    # 18 of 24: Wilson [0.5532, 0.8807]
    assert "| model (likelihood) | 0.750 [0.55, 0.88] | 0.7 |" in text
    assert "### tissue_inference (24 held-out cells, 1 label)" in text
    assert "> **Note:** trivial: one label ('blood' for every cell)" in text
    trivial_at = text.index("### tissue_inference")
    assert text.count("trivial: one label") == 1 and text.index("trivial: one") > trivial_at
    assert "| is_expressed: is this gene expressed (yes / no) | 12 | 2 | 0.500 |" in text
    assert "0.750 [0.47, 0.91] | 0.500 [0.25, 0.75] |" in text
    assert "> **Note:** is_expressed: small split: 12 cells (< 20)" in text
    assert "| scfid[pca2] | 1.5 (within noise floor) | 2 |" in text
    assert "| mmd[median] | 0.3 | 0.1 |" in text
    assert "| mean_expression_r | 0.95 (within noise floor) | 0.9 |" in text
    assert 'not "better than real"' in text
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    tissue = metrics["annotation"]["tissue_inference"]
    assert tissue["notes"][0].startswith("trivial: one label")
    assert tissue["methods"]["majority label"]["ci95"][0] == pytest.approx(
        24 / (24 + 1.959963984540054**2)
    )
    for figure in ("annotation.png", "question_answering.png", "generation.png"):
        assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG"


def test_report_without_a_floor_crossing_has_no_floor_line(tmp_path):
    results = _results()
    results["generation"]["pooled"]["within noise floor"] = {}
    text = report.write_report(tmp_path, {"model": "m"}, results, {}).read_text()
    assert "(within noise floor)" not in text


@pytest.fixture
def figures(monkeypatch):
    """The figures report.py draws, kept open instead of saved."""
    drawn = []
    monkeypatch.setattr(report, "_save", lambda fig, path: drawn.append(fig))
    return drawn


def test_generation_map_colours_real_and_generated_cells_alike(figures, tmp_path):
    report.plot_generation(_results()["generation"], tmp_path / "g.png")
    ax = figures[0].axes[0]
    assert ax.get_xlabel() == "PC1 (23.1% variance)"
    assert ax.get_ylabel() == "PC2 (5.5% variance)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["B cell (real 3, generated 1)", "T cell (real 2, generated 2)"]
    drawn = [c for c in ax.collections if len(c.get_offsets())]
    real_b, generated_b, real_t, generated_t = drawn
    np.testing.assert_array_equal(real_b.get_offsets(), np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(generated_t.get_offsets(), -np.arange(2.0, 6.0).reshape(2, 2))
    for real, generated in ((real_b, generated_b), (real_t, generated_t)):
        # real: filled; generated: a hollow ring of the same colour
        assert real.get_facecolors()[0][3] > 0
        assert generated.get_facecolors().size == 0 or generated.get_facecolors()[0][3] == 0
        np.testing.assert_allclose(generated.get_edgecolors()[0][:3], real.get_facecolors()[0][:3])
    assert not np.allclose(real_b.get_facecolors()[0][:3], real_t.get_facecolors()[0][:3])


def test_annotation_figure_marks_trivial_tasks(figures, tmp_path):
    report.plot_annotation(_results()["annotation"], tmp_path / "a.png")
    titles = [ax.get_title() for ax in figures[0].axes]
    assert titles == [
        "cell_type_annotation (24 cells, 3 labels)",
        "tissue_inference: TRIVIAL (one label)",
    ]
    low, high = accuracy_with_interval(np.array([True] * 18 + [False] * 6))["ci95"]
    caps = figures[0].axes[0].lines  # the error bar's caps at the interval's ends
    assert sorted(c.get_ydata()[0] for c in caps) == pytest.approx([low, high])
    assert figures[0].axes[0].patches[0].get_height() == pytest.approx(0.75)


def test_a_part_not_run_says_why(tmp_path):
    results = _results()
    del results["question_answering"]
    why = "the evaluation config has no question_answering part"
    text = report.write_report(tmp_path, {"model": "m"}, results, {"question_answering": why})
    assert f"## Question answering\n\nNot run: {why}\n" in text.read_text()
    assert not (tmp_path / "question_answering.png").exists()
