"""A dataset's per-cell index: labels as codes, and cells looked up by their labels."""

import itertools

import numpy as np
import pandas as pd

from c2s_jax.corpus.cells import DatasetCells, Labels
from c2s_jax.corpus.splits import SPLIT_IDS


def test_labels_index_like_the_object_array_they_replace():
    column = pd.Series(["T", None, "B", "T", np.nan], dtype=object)
    labels = Labels.from_column(column)
    assert labels.codes.dtype == np.int8
    assert [labels[i] for i in range(5)] == ["T", None, "B", "T", None]
    assert labels[np.array([2, 1, 0])].tolist() == ["B", None, "T"]
    assert labels.distinct() == ["T", "B"]
    # A categorical keeps its codes; categories no cell has are not values.
    categorical = pd.Series(pd.Categorical(["x", "y", None], categories=["w", "x", "y"]))
    labels = Labels.from_column(categorical)
    assert [labels[i] for i in range(3)] == ["x", "y", None]
    assert labels.distinct() == ["x", "y"]
    constant = Labels.constant(4, "Homo sapiens")
    assert constant[np.arange(4)].tolist() == ["Homo sapiens"] * 4 and len(constant) == 4


def _dataset(fields: dict[str, Labels], split: np.ndarray) -> DatasetCells:
    return DatasetCells(
        spec=None,
        sentences=None,
        store=None,
        fields=fields,
        split=split,
        cells_by_split={i: np.flatnonzero(split == i) for i in SPLIT_IDS.values()},
        group_of_cell=np.zeros(len(split), np.int32),
        neighbors=None,
        controls=None,
        description=None,
        expressed_symbols=np.zeros(0, np.int32),
    )


def test_cells_matching_agrees_with_a_scan_of_every_cell():
    rng = np.random.default_rng(0)
    n = 2_000
    raw = {
        "cell_type": rng.choice(["T", "B", "NK", None], n, p=[0.4, 0.3, 0.2, 0.1]),
        "tissue": rng.choice(["blood", "lung"], n),
        "organism": np.full(n, "Homo sapiens", object),  # one value: divides nothing
        "disease": np.full(n, None, object),  # every value missing
    }
    fields = {k: Labels.from_column(pd.Series(v, dtype=object)) for k, v in raw.items()}
    split = rng.integers(0, 3, n).astype(np.int8)
    data = _dataset(fields, split)
    choices = {
        "cell_type": ["T", "B", "NK", "DC"],
        "tissue": ["blood", "lung"],
        "organism": ["Homo sapiens", "Mus musculus"],
        "disease": ["flu"],
    }
    for split_id in SPLIT_IDS.values():
        for size in (1, 2, 3):
            for names in itertools.combinations(sorted(choices), size):
                for values in itertools.product(*(choices[f] for f in names)):
                    wanted = dict(zip(names, values, strict=True))
                    expected = np.flatnonzero(
                        (split == split_id)
                        & np.logical_and.reduce([raw[f] == v for f, v in wanted.items()])
                    )
                    got = data.cells_matching(split_id, wanted)
                    np.testing.assert_array_equal(got, expected, err_msg=str(wanted))
    assert data.labels("cell_type") == ["B", "NK", "T"]
