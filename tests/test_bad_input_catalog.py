"""Every verb of `c2s` against a table of bad inputs: each ends with one line on stderr
that names the problem, exit status 2, and no file left behind."""

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from c2s_jax.cli import main
from tests.conftest import make_counts
from tests.support.trained_model import pbmc_workdir

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = str(ROOT / "configs" / "train" / "gemma2_tiny_synthetic.py")
CORPUS = str(ROOT / "configs" / "corpus" / "pbmc68k_multitask.py")
GRPO = str(ROOT / "configs" / "grpo" / "pbmc68k_cell_type.py")
SWEEP = str(ROOT / "configs" / "sweeps" / "tiny_ladder.py")
NOT_UTF8 = b"CD3D \xff\xfe CD14\n"


@dataclasses.dataclass
class Inputs:
    """Files the cases point at, all in `root`."""

    root: Path

    def __getattr__(self, name: str) -> str:
        # i.cells_h5ad is root/cells.h5ad
        stem, _, suffix = name.rpartition("_")
        if suffix in ("h5ad", "parquet", "jsonl", "txt", "py"):
            name = f"{stem}.{suffix}"
        return str(self.root / name)


def _inputs(root: Path) -> Inputs:
    make_counts().write_h5ad(root / "cells.h5ad")
    (root / "text.h5ad").write_text("not an h5ad file\n")
    (root / "not_utf8.txt").write_bytes(NOT_UTF8)
    (root / "not_utf8.jsonl").write_bytes(b'{"prompt": "a", "text": "\xff"}\n')
    (root / "bad.jsonl").write_text('{"prompt": "a", "text": \n')
    (root / "results.jsonl").write_bytes(b'{"n_params": 1, "tokens": 2, "loss": \xff}\n')
    (root / "a_folder.parquet").mkdir()
    (root / "a_folder.h5ad").mkdir()
    (root / "a_file").write_text("x")
    return Inputs(root)


def _damaged_bundle(root: Path, damage: str) -> str:
    """A copy of the trained model's export with `damage` done to its weights."""
    from c2s_jax.checkpoints.bundle import newest_export

    copy = root / f"bundle_{damage}"
    if not copy.exists():
        shutil.copytree(newest_export(pbmc_workdir()), copy)
        weights = [p for p in (copy / "params").rglob("*") if p.is_file() and "/d/" in str(p)]
        largest = max(weights, key=lambda p: p.stat().st_size)
        if damage == "truncated":
            largest.write_bytes(largest.read_bytes()[:100])
        else:
            (copy / "params" / "manifest.ocdbt").write_bytes(b"\0" * 64)
    return str(copy)


def _train(inputs: Inputs, *overrides: str) -> list[str]:
    """`c2s train` of the tiny experiment in a new workdir, with `overrides`."""
    return ["train", "--config", TINY_TRAIN, "--workdir", inputs.run, *overrides]


def _model() -> str:
    return str(pbmc_workdir())


# (name, arguments given the inputs, text the one line must hold)
CASES: list[tuple[str, Callable[[Inputs], list[str]], str]] = [
    ("sentences: missing input", lambda i: ["sentences", i.missing_h5ad, i.o_parquet], "no such"),
    ("sentences: text renamed .h5ad", lambda i: ["sentences", i.text_h5ad, i.o_parquet], "h5ad"),
    (
        "sentences: output is a folder",
        lambda i: ["sentences", i.cells_h5ad, i.a_folder_parquet],
        "a_folder.parquet",
    ),
    (
        "sentences: output under a file",
        lambda i: ["sentences", i.cells_h5ad, i.a_file + "/o.parquet"],
        "a_file",
    ),
    (
        "train: steps=0",
        lambda i: _train(i, "--config.train.steps=0"),
        "config.train.steps=0",
    ),
    (
        "train: batch_size=0",
        lambda i: _train(i, "--config.data.batch_size=0"),
        "config.data.batch_size",
    ),
    (
        "train: checkpoint_every=0",
        lambda i: _train(i, "--config.train.checkpoint_every=0"),
        "checkpoint_every",
    ),
    (
        "train: negative steps",
        lambda i: _train(i, "--config.train.steps=-5"),
        "config.train.steps=-5",
    ),
    (
        "train: missing config",
        lambda i: ["train", "--config", i.missing_py, "--workdir", i.run],
        "missing.py",
    ),
    (
        "train: unknown key",
        lambda i: _train(i, "--config.train.stepz=3"),
        "stepz",
    ),
    (
        "grpo: no init_from",
        lambda i: ["grpo", "--config", GRPO, "--workdir", i.run, "--config.init_from=''"],
        "config.init_from",
    ),
    (
        "corpus: missing config",
        lambda i: ["corpus", "build", "--config", i.missing_py, "--out", i.corpus],
        "missing.py",
    ),
    (
        "tokenizer: missing config",
        lambda i: ["tokenizer", "train", "--config", i.missing_py, "--out", i.tokenizer],
        "missing.py",
    ),
    (
        "sweep: missing config",
        lambda i: ["sweep", "--config", i.missing_py, "--out", i.sweep],
        "missing.py",
    ),
    (
        "plan: unknown topology",
        lambda i: ["plan", "--config", TINY_TRAIN, "--topology", "v9z-8"],
        "v9z-8",
    ),
    ("scaling fit: not UTF-8", lambda i: ["scaling", "fit", i.results_jsonl], "results.jsonl"),
    ("scaling fit: missing", lambda i: ["scaling", "fit", i.missing_jsonl], "missing.jsonl"),
    (
        "generate: missing model",
        lambda i: ["generate", "--checkpoint", i.missing, "T cell"],
        "missing",
    ),
    (
        "generate: prompts not UTF-8",
        lambda i: ["generate", "--checkpoint", _model(), "--prompts-file", i.not_utf8_txt],
        "not_utf8.txt",
    ),
    (
        "generate: output is a folder",
        lambda i: ["generate", "--checkpoint", _model(), "B cell", "--out-h5ad", i.a_folder_h5ad],
        "a_folder.h5ad",
    ),
    (
        "generate: truncated weights",
        lambda i: ["generate", "--checkpoint", _damaged_bundle(i.root, "truncated"), "B cell"],
        "damaged",
    ),
    (
        "generate: damaged weights index",
        lambda i: ["generate", "--checkpoint", _damaged_bundle(i.root, "manifest"), "B cell"],
        "damaged",
    ),
    (
        "score: jsonl not UTF-8",
        lambda i: ["score", "--checkpoint", _model(), "--jsonl", i.not_utf8_jsonl],
        "not_utf8.jsonl",
    ),
    (
        "score: jsonl not JSON",
        lambda i: ["score", "--checkpoint", _model(), "--jsonl", i.bad_jsonl],
        "bad.jsonl",
    ),
    (
        "score: prompt longer than trained",
        lambda i: ["score", "--checkpoint", _model(), "--prompt", "CD3D " * 3000, "B cell"],
        "--truncate",
    ),
    (
        "generate: raw prompt longer than trained",
        lambda i: ["generate", "--checkpoint", _model(), "--raw", "CD3D " * 3000],
        "--truncate",
    ),
    (
        "embed: text renamed .h5ad",
        lambda i: ["embed", i.text_h5ad, i.o_h5ad, "--checkpoint", _model()],
        "text.h5ad",
    ),
    (
        "embed: output is a folder",
        lambda i: ["embed", i.cells_h5ad, i.a_folder_h5ad, "--checkpoint", _model()],
        "a_folder.h5ad",
    ),
    (
        "annotate: output is a folder",
        lambda i: ["annotate", i.cells_h5ad, "--checkpoint", _model(), "--out", i.a_folder_h5ad],
        "a_folder.h5ad",
    ),
    (
        "annotate: text renamed .h5ad",
        lambda i: ["annotate", i.text_h5ad, "--checkpoint", _model(), "--out", i.o_h5ad],
        "text.h5ad",
    ),
    (
        "eval: missing config",
        lambda i: ["eval", "--config", i.missing_py, "--out", i.eval],
        "missing.py",
    ),
    ("convert: missing checkpoint", lambda i: ["convert", "hf2flax", i.missing, i.flax], "missing"),
    ("demo: workdir is a file", lambda i: ["demo", "--workdir", i.a_file], "a_file"),
]


@pytest.mark.parametrize(("name", "arguments", "named"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_ends_in_one_line_with_status_2_and_leaves_nothing(
    name, arguments, named, tmp_path, capsys
):
    inputs = _inputs(tmp_path)
    argv = arguments(inputs)  # may build a damaged bundle: part of the inputs
    before = sorted(tmp_path.rglob("*"))
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    # Progress bars and warnings may come first; the failure is one line.
    lines = [
        line
        for line in err.splitlines()
        if line.strip() and "warning:" not in line and "%|" not in line
    ]
    verb = argv[0]
    assert status == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"c2s {verb}: error: "), err[-2000:]
    assert named in lines[0], lines[0]
    assert sorted(tmp_path.rglob("*")) == before, "files were left behind"
