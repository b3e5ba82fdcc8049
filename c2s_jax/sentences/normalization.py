"""C2S normalization: counts -> normalize_total -> log10(1 + x), and spotting input that
has been normalized already so that it is never normalized twice."""

import logging

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

# log10(1 + x) of a cell normalized to 1e4 counts stays below ~4.1; values far above
# that are not base-10 log data (natural log, CPM or unlogged data).
_LOG10_CEILING = 6.0
_SAMPLE_VALUES = 200_000


def looks_like_counts(values: np.ndarray, where: str) -> bool:
    """True when the (non-zero) values are whole numbers, i.e. raw counts.

    Non-integer input is taken as already normalized and reported as such; very large
    non-integer values also get a warning, since C2S expects log10(1 + x) data.

    Args:
      values: a sample of the matrix's stored values (any shape).
      where: file/field for messages.
    """
    sample = np.asarray(values[:_SAMPLE_VALUES], dtype=np.float64)
    if sample.size == 0 or np.all(sample == np.round(sample)):
        return True
    top = float(sample.max())
    log.info("%s holds non-integer values: treated as already normalized, used as is", where)
    if top > _LOG10_CEILING:
        log.warning(
            "%s: values reach %.3g; C2S expects normalize_total then log10(1 + x) "
            "(pass counts, or normalize with log base 10), and the inverse fit will be on "
            "this scale",
            where,
            top,
        )
    return False


def log1p10_normalize(
    block_CG: sp.csr_matrix, totals_C: np.ndarray, target_sum: float
) -> sp.csr_matrix:
    """log10(1 + x / total * target_sum) per cell, as float32 (scanpy's normalize_total
    followed by log1p with base 10).

    Args:
      block_CG: csr [cells, genes] of counts.
      totals_C: [cells] each cell's total counts over the kept genes (> 0).
      target_sum: counts every cell is scaled to.
    """
    scale = np.repeat((target_sum / np.asarray(totals_C, np.float64)), np.diff(block_CG.indptr))
    data = np.log10(1.0 + block_CG.data.astype(np.float64) * scale).astype(np.float32)
    return sp.csr_matrix((data, block_CG.indices, block_CG.indptr), shape=block_CG.shape)
