"""The `c2s` command end to end, as a user runs it."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from c2s_jax.cli import main
from c2s_jax.sentences.cell_sentences import cell_sentences


@pytest.fixture
def pbmc_file(pbmc_counts, tmp_path):
    path = tmp_path / "pbmc.h5ad"
    pbmc_counts.write_h5ad(path)
    return path


def test_sentences_writes_table_and_metadata(pbmc_file, pbmc_counts, tmp_path, capsys):
    out = tmp_path / "out" / "pbmc.parquet"
    status = main(
        [
            "sentences",
            str(pbmc_file),
            str(out),
            "--top-k",
            "50",
            "--seed",
            "3",
            "--obs",
            "cell_type",
            "tissue",
            "--no-progress",
        ]
    )
    assert status == 0
    table = pq.read_table(out).to_pandas()
    columns = ["cell_name", "cell_sentence", "sentence_length", "cell_type", "tissue"]
    assert list(table.columns) == columns
    assert len(table) == 700
    expected = cell_sentences(pbmc_counts, seed=3, top_k=50)
    assert table["cell_sentence"].tolist() == expected.sentences()
    assert table["sentence_length"].tolist() == [len(s.split()) for s in expected.sentences()]
    assert table["cell_type"].tolist() == pbmc_counts.obs["cell_type"].tolist()
    meta = json.loads((tmp_path / "out" / "pbmc.meta.json").read_text())
    assert meta["options"]["top_k"] == 50 and meta["stats"]["n_cells_out"] == 700
    assert len(meta["vocabulary"]) == 765
    assert 0.8 < meta["inverse_fit"]["r2"] <= 1
    assert "wrote 700 cell sentences" in capsys.readouterr().out


def test_compression_choice_reads_back_the_same(pbmc_file, tmp_path):
    for codec in ("lz4", "none"):
        out = tmp_path / f"{codec}.parquet"
        assert (
            main(["sentences", str(pbmc_file), str(out), "--compression", codec, "--no-progress"])
            == 0
        )
        meta = pq.ParquetFile(out).metadata.row_group(0).column(1)
        assert meta.compression == {"lz4": "LZ4", "none": "UNCOMPRESSED"}[codec]
    lz4 = pq.read_table(tmp_path / "lz4.parquet").column("cell_sentence")
    assert lz4.equals(pq.read_table(tmp_path / "none.parquet").column("cell_sentence"))


def test_bad_input_is_one_line_and_exit_status_2(tmp_path, pbmc_file, capsys):
    assert main(["sentences", str(tmp_path / "missing.h5ad"), str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("c2s sentences: error: ") and "missing.h5ad: no such file" in err
    assert main(["sentences", str(pbmc_file), str(tmp_path / "o.parquet"), "--obs", "donor"]) == 2
    assert "obs has no column ['donor']" in capsys.readouterr().err
    assert main(["sentences", str(pbmc_file), str(tmp_path / "o.csv")]) == 2
    assert "must be a .parquet" in capsys.readouterr().err


def test_symbols_with_whitespace_are_refused_or_sanitized(pbmc_counts, tmp_path, capsys):
    adata = pbmc_counts[:20].copy()
    adata.var_names = [
        f"{name[:2]} {name[2:]}" if i < 3 else name for i, name in enumerate(adata.var_names)
    ]
    path = tmp_path / "spaced.h5ad"
    adata.write_h5ad(path)
    out = tmp_path / "o.parquet"
    assert main(["sentences", str(path), str(out), "--no-progress"]) == 2
    assert "3 gene symbols hold whitespace" in capsys.readouterr().err
    assert not out.exists()
    assert main(["sentences", str(path), str(out), "--no-progress", "--sanitize-symbols"]) == 0
    words = {w for s in pq.read_table(out).column("cell_sentence").to_pylist() for w in s.split()}
    spaced = {f"{n[:2]}_{n[2:]}".upper() for n in pbmc_counts.var_names[:3]}
    assert words & spaced  # the spaced symbols appear as single, underscored words


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "c2s_jax", "sentences", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--top-k" in done.stdout and "--layer" in done.stdout
