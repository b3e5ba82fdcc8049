"""The rank -> expression fit and reconstruction, against scipy/sklearn and the C2S
reference functions."""

import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp
import scipy.stats
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from c2s_jax.errors import InputError
from c2s_jax.sentences.inverse import InverseFit, fit_inverse, reconstruct

c2s_utils = pytest.importorskip("cell2sentence.utils")


def _normalized_rows(counts, n=120):
    adata = counts[:n].copy()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata, base=10)
    X = sp.csr_matrix(adata.X)
    return X, [np.sort(X[i].data.astype(np.float64))[::-1] for i in range(X.shape[0])]


def test_fit_matches_the_reference_procedure(pbmc_counts):
    X, cells = _normalized_rows(pbmc_counts)
    ours = fit_inverse(cells, max_rank=999)
    # The cell2sentence benchmark: ranks over all genes, zeros excluded, sklearn fit on
    # log10(1 + rank) < 3, metrics over every expressed gene.
    dense = np.asarray(X.todense())
    ranks = c2s_utils.sort_transcript_counts(dense)
    df = c2s_utils.get_benchmark_df(dense, ranks)
    x, y = df["log_rank_normalized_expression"].to_numpy(), df["normalized_expression"].to_numpy()
    line = LinearRegression().fit(x[x < 3].reshape(-1, 1), y[x < 3])
    predicted = line.predict(x.reshape(-1, 1))
    assert ours.slope == pytest.approx(line.coef_[0], rel=1e-9)
    assert ours.intercept == pytest.approx(line.intercept_, rel=1e-9)
    assert ours.r2 == pytest.approx(r2_score(y, predicted), rel=1e-9)
    assert ours.pearson == pytest.approx(scipy.stats.pearsonr(y, predicted).statistic, rel=1e-9)
    # Spearman depends on the reference's random order within ties only through ranks of
    # equal values, which get equal predictions either way.
    assert ours.spearman == pytest.approx(scipy.stats.spearmanr(y, predicted).statistic, rel=1e-9)
    assert ours.n_points == len(y)


def test_fit_uses_only_ranks_below_max_rank():
    rng = np.random.default_rng(0)
    cells = [np.sort(rng.gamma(2.0, 1.0, 50))[::-1] for _ in range(10)]
    fit = fit_inverse(cells, max_rank=10)
    x = np.concatenate([np.log10(1 + np.arange(10)) for _ in cells])
    y = np.concatenate([c[:10] for c in cells])
    expected = scipy.stats.linregress(x, y)
    assert fit.slope == pytest.approx(expected.slope, rel=1e-10)
    assert fit.intercept == pytest.approx(expected.intercept, rel=1e-10)


def test_reconstruction_matches_the_reference_and_handles_bad_words():
    fit = InverseFit(
        slope=-0.5, intercept=1.5, r2=1, pearson=1, spearman=1, n_cells=1, n_points=1, max_rank=999
    )
    symbols = ["CD3E", "GNLY", "NKG7", "MS4A1"]
    ref = c2s_utils.reconstruct_expression_from_cell_sentence(
        "NKG7 CD3E GNLY", " ", symbols, fit.slope, fit.intercept
    )
    ours, unknown = reconstruct(["NKG7 CD3E GNLY"], fit, symbols)
    np.testing.assert_allclose(ours.toarray()[0], ref, rtol=1e-6)
    assert unknown[0] == 0

    matrix, unknown = reconstruct(["nkg7 NOTAGENE CD3E NKG7", ""], fit, symbols)
    row = matrix.toarray()[0]
    assert unknown.tolist() == [1, 0]
    assert row[2] == pytest.approx(fit.intercept + fit.slope * np.log10(1 + 1.5))  # mean of 0, 3
    assert row[0] == pytest.approx(fit.intercept + fit.slope * np.log10(1 + 2))  # slot kept
    assert row[3] == 0 and matrix[1].nnz == 0


def test_expression_is_never_negative():
    fit = InverseFit(-1.0, 1.0, 1, 1, 1, 1, 1, 999)
    assert fit.expression(np.array([0, 100])).tolist() == [1.0, 0.0]


def test_fit_round_trips_through_json(tmp_path):
    fit = fit_inverse([np.array([3.0, 2.0, 1.0]), np.array([2.5, 1.0])])
    fit.save(tmp_path / "fit.json")
    assert InverseFit.load(tmp_path / "fit.json") == fit
    (tmp_path / "bad.json").write_text('{"slope": 1}')
    with pytest.raises(InputError, match="bad.json.*lacks fields"):
        InverseFit.load(tmp_path / "bad.json")
    with pytest.raises(InputError, match="no expressed genes"):
        fit_inverse([np.zeros(0)])
