"""The cell sentence of a completion: up to the closing period, which a period inside a
symbol is not; a completion cut by its token limit loses its possibly partial last word."""

from c2s_jax.inference.generation import sentence_of


def test_the_closing_period_ends_the_sentence_and_a_symbols_period_does_not():
    assert sentence_of("CD3D CTD-3138B18.5 LYZ. Cell 2: CD14") == "CD3D CTD-3138B18.5 LYZ"
    assert sentence_of(" CD3D LYZ.") == "CD3D LYZ"
    assert sentence_of("CD3D LYZ") == "CD3D LYZ"


def test_a_completion_cut_by_its_limit_drops_its_last_word_unless_closed():
    # GTF2I in three pieces, cut after the first: 'GTF' is not a gene.
    assert sentence_of("CD3D GTF", cut_short=True) == "CD3D"
    assert sentence_of("CD3D GTF2I.", cut_short=True) == "CD3D GTF2I"
