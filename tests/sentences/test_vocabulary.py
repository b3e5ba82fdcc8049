"""Merging vocabularies across datasets."""

from c2s_jax.sentences.vocabulary import GeneVocabulary


def test_merge_adds_shared_counts_and_appends_new_symbols():
    a = GeneVocabulary.from_dict({"CD3E": 5, "GNLY": 2})
    b = GeneVocabulary.from_dict({"NKG7": 4, "CD3E": 1})
    merged = a.merge(b)
    assert merged.as_dict() == {"CD3E": 6, "GNLY": 2, "NKG7": 4}
    assert list(merged.symbols) == ["CD3E", "GNLY", "NKG7"]
    assert GeneVocabulary.from_dict(merged.as_dict()) == merged


def test_expressed_drops_unseen_symbols():
    vocab = GeneVocabulary.from_dict({"A": 0, "B": 3})
    assert vocab.expressed().as_dict() == {"B": 3}
