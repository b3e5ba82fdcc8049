"""The gene vocabulary: each symbol with the number of cells that express it."""

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class GeneVocabulary:
    """Symbols in first-seen order, with how many cells express each one.

    Attributes:
      symbols: [S] upper-cased gene symbols.
      cell_counts: [S] int64, cells in which the gene is expressed (> 0).
    """

    symbols: tuple[str, ...]
    cell_counts: tuple[int, ...]

    def __post_init__(self):
        if len(self.symbols) != len(self.cell_counts):
            raise ValueError("symbols and cell_counts must have the same length")

    def __len__(self) -> int:
        return len(self.symbols)

    @classmethod
    def from_counts(cls, symbols: Iterable[str], cell_counts: Iterable[int]) -> "GeneVocabulary":
        """Builds a vocabulary from parallel sequences."""
        return cls(tuple(str(s) for s in symbols), tuple(int(c) for c in cell_counts))

    def as_dict(self) -> dict[str, int]:
        """{symbol: cell count}, in vocabulary order (JSON-ready)."""
        return dict(zip(self.symbols, self.cell_counts, strict=True))

    @classmethod
    def from_dict(cls, counts: Mapping[str, int]) -> "GeneVocabulary":
        """Inverse of `as_dict`."""
        return cls.from_counts(counts.keys(), counts.values())

    def merge(self, other: "GeneVocabulary") -> "GeneVocabulary":
        """Union of two vocabularies: counts of shared symbols add; new symbols follow.

        The order of `self` is kept, so merging datasets one after another gives every
        earlier symbol a stable position.
        """
        merged = self.as_dict()
        for symbol, count in zip(other.symbols, other.cell_counts, strict=True):
            merged[symbol] = merged.get(symbol, 0) + count
        return GeneVocabulary.from_dict(merged)

    def expressed(self) -> "GeneVocabulary":
        """Only the symbols expressed in at least one cell."""
        counts = np.asarray(self.cell_counts)
        keep = np.flatnonzero(counts > 0)
        return GeneVocabulary.from_counts(
            (self.symbols[i] for i in keep), (self.cell_counts[i] for i in keep)
        )
