"""Gene symbols for the words of cell sentences: upper-cased, unique, never guessed.

C2S words are upper-cased gene symbols. Symbols come from var_names or, when var_names are
Ensembl IDs, from a var column the user names. Symbols that collide (before or after
upper-casing) are an error unless the user picks a merge policy, because silently keeping
one of them would change which gene a word means.
"""

import dataclasses
import logging
import re
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from c2s_jax.errors import InputError

log = logging.getLogger(__name__)

DuplicatePolicy = Literal["error", "sum", "first"]
DUPLICATE_POLICIES = ("error", "sum", "first")

_ENSEMBL_ID = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$", re.IGNORECASE)
_MAX_LISTED = 20


@dataclasses.dataclass(frozen=True)
class GeneSymbols:
    """The words of a dataset and how the matrix's columns map onto them.

    Attributes:
      symbols: [S] unique upper-cased symbols, in order of first appearance in var.
      column_to_symbol: [G] int32, the symbol index of each matrix column; -1 for columns
        that have no symbol or that the duplicate policy dropped.
      summed: True when several columns map to one symbol and must be added together.
      identity: True when column i is symbol i for every column (nothing to re-index).
    """

    symbols: np.ndarray
    column_to_symbol: np.ndarray
    summed: bool
    identity: bool

    def to_symbol_space(self, block_CG: sp.csr_matrix) -> sp.csr_matrix:
        """Re-indexes a csr block [cells, columns] to [cells, symbols].

        Dropped columns disappear; with the 'sum' policy duplicate columns are added.
        """
        if self.identity:
            return block_CG
        ids = self.column_to_symbol[block_CG.indices]
        keep = ids >= 0
        row_of_entry = np.repeat(np.arange(block_CG.shape[0]), np.diff(block_CG.indptr))
        out = sp.csr_matrix(
            (block_CG.data[keep], (row_of_entry[keep], ids[keep])),
            shape=(block_CG.shape[0], len(self.symbols)),
            dtype=block_CG.dtype,
        )
        out.sum_duplicates()
        return out


def gene_symbols(
    var: pd.DataFrame,
    where: str,
    symbol_key: str | None = None,
    duplicates: DuplicatePolicy = "error",
    sanitize: bool = False,
) -> GeneSymbols:
    """Builds the symbol mapping for a var table.

    Args:
      var: the var table of the chosen matrix (index = var_names).
      where: the file/field for messages.
      symbol_key: a var column holding gene symbols (e.g. when var_names are Ensembl IDs).
      duplicates: 'error' lists colliding symbols; 'sum' adds their columns (right for raw
        counts); 'first' keeps the first column of each symbol.
      sanitize: replace whitespace inside a symbol with '_' instead of refusing it (a
        sentence is split into words at whitespace, so such a symbol would become several).
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise InputError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}")
    if len(var) == 0:
        raise InputError(f"{where}: has no genes (var is empty), so cells have no sentences")
    if symbol_key is not None:
        if symbol_key not in var.columns:
            raise InputError(
                f"{where}: var has no column '{symbol_key}' for gene symbols (available: "
                f"{', '.join(map(str, var.columns)) or 'none'})"
            )
        raw = var[symbol_key]
    else:
        raw = pd.Series(var.index, index=var.index)
        _refuse_non_symbols(raw, var, where)
    names = raw.astype("string").str.strip().str.upper()
    spaced = names.str.contains(r"\s", regex=True).fillna(False).to_numpy(dtype=bool)
    if spaced.any() and sanitize:
        names = names.str.replace(r"\s+", "_", regex=True)
    elif spaced.any():
        listed = ", ".join(repr(str(s)) for s in raw[spaced].head(_MAX_LISTED))
        more = f" (and {spaced.sum() - _MAX_LISTED} more)" if spaced.sum() > _MAX_LISTED else ""
        raise InputError(
            f"{where}: {spaced.sum()} gene symbols hold whitespace, which would split each "
            f"into several words of a sentence: {listed}{more}. Rename them, or replace the "
            "whitespace with '_' (--sanitize-symbols; sanitize_symbols=True in a corpus "
            "dataset)"
        )
    missing = names.isna() | (names == "")
    if missing.all():
        raise InputError(f"{where}: no gene symbols found in var '{symbol_key or 'var_names'}'")
    if missing.any():
        log.warning("%s: %d genes have no symbol and are left out", where, int(missing.sum()))
    upper = names[~missing].to_numpy(dtype=object)
    columns = np.flatnonzero(~missing.to_numpy())
    symbols, first_index, inverse = np.unique(upper, return_index=True, return_inverse=True)
    # np.unique sorts; restore first-appearance order so the vocabulary follows var.
    appearance = np.argsort(first_index, kind="stable")
    rank_of_sorted = np.empty_like(appearance)
    rank_of_sorted[appearance] = np.arange(len(appearance))
    symbol_of_column = rank_of_sorted[inverse]
    has_duplicates = len(symbols) < len(upper)
    column_to_symbol = np.full(len(var), -1, dtype=np.int32)
    if has_duplicates and duplicates == "error":
        raise InputError(_duplicates_message(raw[~missing].to_numpy(dtype=object), upper, where))
    if has_duplicates and duplicates == "first":
        first_column = np.zeros(len(upper), dtype=bool)
        first_column[first_index] = True
        column_to_symbol[columns[first_column]] = symbol_of_column[first_column]
    else:
        column_to_symbol[columns] = symbol_of_column
    return GeneSymbols(
        symbols=symbols[appearance].astype(str),
        column_to_symbol=column_to_symbol,
        summed=has_duplicates and duplicates == "sum",
        identity=np.array_equal(column_to_symbol, np.arange(len(var))),
    )


def _refuse_non_symbols(names: pd.Series, var: pd.DataFrame, where: str) -> None:
    text = names.astype(str)
    columns = ", ".join(map(str, var.columns)) or "none"
    if text.str.match(_ENSEMBL_ID).mean() > 0.5:
        raise InputError(
            f"{where}: var_names are Ensembl IDs, not gene symbols; name the var column that "
            f"holds symbols (--gene-symbols COLUMN; var columns: {columns})"
        )
    if text.str.fullmatch(r"\d+").all():
        raise InputError(
            f"{where}: var_names are plain numbers, so there are no gene symbols; name the var "
            f"column that holds them (--gene-symbols COLUMN; var columns: {columns})"
        )


def _duplicates_message(original: np.ndarray, upper: np.ndarray, where: str) -> str:
    groups = pd.Series(original).groupby(upper).agg(list)
    dup = groups[groups.map(len) > 1]
    listed = "; ".join(
        f"{sym}: {', '.join(map(str, cols))}" for sym, cols in dup.head(_MAX_LISTED).items()
    )
    more = f" (and {len(dup) - _MAX_LISTED} more)" if len(dup) > _MAX_LISTED else ""
    return (
        f"{where}: {len(dup)} gene symbols occur more than once after upper-casing: "
        f"{listed}{more}. Choose duplicates='sum' (add their counts; --duplicates sum) or "
        "duplicates='first' (keep the first column; --duplicates first)"
    )
