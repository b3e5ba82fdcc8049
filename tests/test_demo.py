"""The README's main job on the embedded data."""

from c2s_jax.demo import run_demo


def test_demo_runs_end_to_end(tmp_path, capsys):
    figures = run_demo(str(tmp_path))
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
