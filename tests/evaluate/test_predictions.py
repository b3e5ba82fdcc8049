"""predictions.h5ad from hand-made per-task tables on the shared model's held-out cells:
scanpy column types, missing values where a task skipped a cell, PCA against
scikit-learn, and a file anndata reads back."""

import anndata
import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA

from c2s_jax.checkpoints.bundle import load_bundle
from c2s_jax.evaluate.held_out import load_held_out
from c2s_jax.evaluate.predictions import join_tables, predictions_adata, write_predictions
from tests.support.trained_model import pbmc_workdir

pytestmark = pytest.mark.usefixtures("single_threaded_blas")


@pytest.fixture(scope="module")
def held():
    return load_held_out(load_bundle(pbmc_workdir()))


def test_predictions_file(held, tmp_path):
    cells = held.split_cells("test")[:12]
    annotation = pd.DataFrame(
        {
            "cell_type": [str(t) for t in held.labels("cell_type", cells)],
            "cell_type_pred_knn": ["B cell"] * 12,
            "cell_type_correct_knn": [True, False] * 6,
            "cell_type_score_knn": np.linspace(0.2, 1.0, 12),
        },
        index=cells,
    )
    qa = pd.DataFrame(  # a task that asked only some cells
        {"qa_is_expressed_answer": ["yes", "no"], "qa_is_expressed_correct_likelihood": [1, 0]},
        index=cells[[10, 3]],
    ).astype({"qa_is_expressed_correct_likelihood": bool})
    table = join_tables([annotation, qa])
    assert list(table.index) == list(cells)
    adata = predictions_adata(held, table, {"CD74": 5}, {"methods": {"knn": "kNN"}})
    path = tmp_path / "predictions.h5ad"
    write_predictions(path, adata)
    back = anndata.read_h5ad(path)
    assert list(back.obs_names) == list(held.cells.sentences.cell_names(cells))
    assert isinstance(back.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert back.obs["cell_type_correct_knn"].tolist() == [True, False] * 6
    answered = back.obs["qa_is_expressed_correct_likelihood"]
    assert str(answered.dtype) == "boolean"
    assert answered.iloc[3] == np.False_ and answered.iloc[10] == np.True_
    assert answered.isna().sum() == 10 and back.obs["qa_is_expressed_answer"].isna().sum() == 10
    np.testing.assert_allclose(back.obs["cell_type_score_knn"], np.linspace(0.2, 1.0, 12))
    in_vocabulary = back.var["in_model_vocabulary"]
    assert in_vocabulary.sum() == 1 and in_vocabulary["CD74"]
    assert back.uns["c2s_eval"]["methods"] == {"knn": "kNN"}
    assert back.uns["log1p"] == {"base": 10}
    reference = PCA(n_components=11, svd_solver="full").fit(back.X.toarray().astype(np.float64))
    np.testing.assert_allclose(
        back.uns["pca"]["variance_ratio"], reference.explained_variance_ratio_, rtol=1e-4
    )
    expected = reference.transform(back.X.toarray().astype(np.float64))
    signs = np.sign(np.sum(expected * back.obsm["X_pca"], axis=0))
    np.testing.assert_allclose(back.obsm["X_pca"] * signs, expected, atol=1e-4)
