"""Every notebook runs top to bottom (its code cells, in order, in one namespace).

A notebook that reads the C2S_NOTEBOOK_SIZE knob runs here at its "test" size. The scaling
notebook trains a ladder even then (its sweep and fit pieces have fast tests of their
own), so it runs with the slow suite (`python -m pytest -m slow`), at both sizes.
"""

import json
from pathlib import Path

import matplotlib
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = [
    pytest.param(path, marks=pytest.mark.slow) if path.name == "scaling_laws.ipynb" else path
    for path in sorted(NOTEBOOK_DIR.glob("*.ipynb"))
]
SIZE_KNOB = "C2S_NOTEBOOK_SIZE"


def run_notebook(notebook: Path, size: str, monkeypatch, workdir: Path) -> dict:
    """Executes the code cells of `notebook` in `workdir` at `size`; returns the namespace."""
    matplotlib.use("Agg")
    monkeypatch.setenv(SIZE_KNOB, size)
    monkeypatch.chdir(workdir)  # notebooks write their outputs to the current directory
    cells = json.loads(notebook.read_text())["cells"]
    namespace: dict = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{notebook.name}", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_at_test_size(notebook, monkeypatch, tmp_path):
    run_notebook(notebook, "test", monkeypatch, tmp_path)


@pytest.mark.slow
def test_scaling_laws_notebook_at_full_size(monkeypatch, tmp_path):
    namespace = run_notebook(NOTEBOOK_DIR / "scaling_laws.ipynb", "full", monkeypatch, tmp_path)
    assert len(namespace["points"]) == 15  # five sizes x three token budgets
    assert namespace["fit_n"].values["alpha"] > 0  # the loss falls with model size
    assert (tmp_path / "scaling_laws_full" / "scaling_laws.png").stat().st_size > 0
