"""scFID: the Fréchet distance between Gaussians fitted to real and generated cell embeddings.

FID = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2). The trace of the matrix square
root is taken through symmetric eigendecompositions only: S1 S2 is similar to the
symmetric positive semi-definite matrix S1^1/2 S2 S1^1/2, whose eigenvalues are those of
S1 S2, so tr sqrt(S1 S2) is the sum of their square roots. When S1 is positive definite
its Cholesky factor L (S1 = L L^T) gives the same eigenvalues from L^T S2 L at a fraction
of the cost of a second eigendecomposition; a rank-deficient S1 (fewer cells than
dimensions) takes the S1^1/2 route. Symmetric eigh runs on every
JAX backend (CPU, GPU, TPU); the general eigendecomposition does not run on TPU, and the
Schur form behind scipy.linalg.sqrtm runs on the host only.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from c2s_jax.errors import InputError
from c2s_jax.evaluate.embedders import Embedder

# On TPU the default matmul precision rounds float32 operands to bfloat16; covariances
# and the sandwich product feed a subtraction of nearly equal traces, so use full precision.
_FULL = jax.lax.Precision.HIGHEST


@jax.jit
def gaussian_moments(x_ND: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean [D] and unbiased covariance [D, D] of the rows of x [N, D], N >= 2.

    Two-pass: rows are centred before the product, so that a large mean does not cancel
    the variance away.
    """
    mean_D = jnp.mean(x_ND, axis=0)
    centered_ND = x_ND - mean_D
    # Contracting the row axis of both operands directly lets XLA's CPU GEMM read the
    # matrix as stored; an explicit transpose first costs a copy and a slower kernel.
    gram_DD = jax.lax.dot_general(
        centered_ND, centered_ND, (((0,), (0,)), ((), ())), precision=_FULL
    )
    cov_DD = gram_DD / (x_ND.shape[0] - 1)
    return mean_D, cov_DD


def _psd_sqrt(cov_DD: jax.Array) -> jax.Array:
    """Symmetric square root V diag(sqrt(w)) V^T; eigenvalues below zero are rounding noise
    of a positive semi-definite matrix and are clipped."""
    w_D, V_DD = jnp.linalg.eigh(cov_DD)
    return jnp.matmul(V_DD * jnp.sqrt(jnp.clip(w_D, 0.0)), V_DD.T, precision=_FULL)


@jax.jit
def frechet_distance_from_moments(
    mean1_D: jax.Array, cov1_DD: jax.Array, mean2_D: jax.Array, cov2_DD: jax.Array
) -> jax.Array:
    """The Fréchet distance of N(mean1, cov1) and N(mean2, cov2), without input checks.

    Jit-compiled once per (D, dtype), whatever the sample sizes behind the moments.

    Returns:
      A scalar in the input dtype, clipped at 0 (rounding can push the distance between
      near-identical moments slightly below zero).
    """
    # L^T S2 L and S1^1/2 S2 S1^1/2 are both similar to S1 S2: the same eigenvalues.
    chol_DD = jnp.linalg.cholesky(cov1_DD)
    factor_DD = jax.lax.cond(
        jnp.all(jnp.isfinite(chol_DD)) & jnp.all(jnp.diagonal(chol_DD) > 0),
        lambda: chol_DD,
        lambda: _psd_sqrt(cov1_DD),
    )
    # factor^T S2 factor; contracting the first axes reads the factor without a transpose.
    left_DD = jax.lax.dot_general(factor_DD, cov2_DD, (((0,), (0,)), ((), ())), precision=_FULL)
    sandwich_DD = jnp.matmul(left_DD, factor_DD, precision=_FULL)
    # eigvalsh symmetrizes its input, which removes the asymmetry the products left behind.
    trace_sqrt = jnp.sum(jnp.sqrt(jnp.clip(jnp.linalg.eigvalsh(sandwich_DD), 0.0)))
    diff_D = mean1_D - mean2_D
    fid = jnp.dot(diff_D, diff_D) + jnp.trace(cov1_DD) + jnp.trace(cov2_DD) - 2.0 * trace_sqrt
    return jnp.maximum(fid, 0.0)


def _dtype_of(x: ArrayLike) -> np.dtype:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def _compute_dtype(real: ArrayLike, generated: ArrayLike, dtype: DTypeLike | None) -> np.dtype:
    """float64 when asked for (or given float64 input) and JAX has x64 on; float32 otherwise.

    Half-precision and integer input is computed in float32 at least.
    """
    x64 = bool(jax.config.jax_enable_x64)
    if dtype is not None:
        chosen = np.dtype(dtype)
        if not jnp.issubdtype(chosen, jnp.floating):
            raise InputError(f"dtype={chosen}: pass a floating dtype (float32 or float64)")
        if chosen == np.float64 and not x64:
            raise InputError(
                "dtype=float64 needs 64-bit JAX: run inside `with jax.enable_x64(True):` or set "
                "JAX_ENABLE_X64=1, or pass dtype=float32"
            )
        return np.dtype(jnp.promote_types(chosen, jnp.float32))
    # Read dtypes from the arrays themselves: np.result_type would copy a device array.
    inputs = jnp.promote_types(_dtype_of(real), _dtype_of(generated))
    promoted = np.dtype(jnp.promote_types(inputs, jnp.float32))
    return promoted if x64 else np.dtype(np.float32)


def _as_matrix(x: ArrayLike, name: str, dtype: np.dtype) -> jax.Array:
    shape = np.shape(x)
    if len(shape) != 2:
        raise InputError(f"{name}: expected a 2-D array [cells, dims], got shape {shape}")
    if shape[0] < 2:
        raise InputError(f"{name}: needs at least 2 rows for a covariance, got {shape[0]}")
    if isinstance(x, jax.Array):
        return x.astype(dtype)
    # device_put can share the host buffer on CPU where jnp.asarray would copy it.
    return jax.device_put(np.asarray(x, dtype=dtype))


def _finite_moments(x_ND: jax.Array, name: str) -> tuple[jax.Array, jax.Array]:
    """The moments of x, refused when not finite.

    A NaN or inf anywhere in x reaches the mean and the covariance, so checking those
    [D] + [D, D] values replaces a separate pass over the whole input.
    """
    mean_D, cov_DD = gaussian_moments(x_ND)
    if np.all(np.isfinite(np.asarray(mean_D))) and np.all(np.isfinite(np.asarray(cov_DD))):
        return mean_D, cov_DD
    bad_rows = np.flatnonzero(~np.all(np.isfinite(np.asarray(x_ND)), axis=1))
    if bad_rows.size:
        raise InputError(
            f"{name}: contains NaN or inf (first in row {bad_rows[0]}); drop or fix those rows"
        )
    raise InputError(
        f"{name}: its covariance overflows {x_ND.dtype}; rescale the embeddings or use float64"
    )


def frechet_distance(
    real: ArrayLike, generated: ArrayLike, *, dtype: DTypeLike | None = None
) -> float:
    """Fréchet distance between Gaussians fitted to two samples (FID on any embedding).

    Args:
      real: [n, d] embeddings of real cells (numpy or JAX array).
      generated: [m, d] embeddings of generated cells.
      dtype: precision of the computation. Default: the inputs' floating dtype, at least
        float32; float64 needs JAX's x64 mode (`with jax.enable_x64(True):`) and falls back
        to float32 without it.

    Returns:
      The distance (squared embedding units), >= 0. In float32 its absolute error is about
      1e-5 of tr S1 + tr S2 (eigenvalue rounding in the traces that cancel), so distances
      far below the traces, such as real-vs-real noise floors, need float64.

    Raises:
      InputError (a ValueError) naming the argument: not 2-D, different d, fewer than two
      rows, NaN or inf, or a covariance that overflows the dtype.

    Warns:
      UserWarning when n <= d or m <= d: that covariance has rank below d, so the distance
      depends on which directions the sample happens to span and is biased upwards.
    """
    compute_dtype = _compute_dtype(real, generated, dtype)
    real_ND = _as_matrix(real, "real", compute_dtype)
    generated_MD = _as_matrix(generated, "generated", compute_dtype)
    if real_ND.shape[1] != generated_MD.shape[1]:
        raise InputError(
            f"generated: has d={generated_MD.shape[1]} columns but real has "
            f"d={real_ND.shape[1]}; embed both with the same embedder"
        )
    d = real_ND.shape[1]
    for name, n in (("real", real_ND.shape[0]), ("generated", generated_MD.shape[0])):
        if n <= d:
            warnings.warn(
                f"{name}: n={n} rows for d={d} dimensions, so its covariance is rank-deficient "
                f"(rank <= {n - 1}); use more cells than dimensions or a smaller embedding",
                UserWarning,
                stacklevel=2,
            )
    moments = (*_finite_moments(real_ND, "real"), *_finite_moments(generated_MD, "generated"))
    return float(frechet_distance_from_moments(*moments))


def scfid(
    real_expression: ArrayLike,
    generated_expression: ArrayLike,
    embedder: Embedder,
    *,
    dtype: DTypeLike | None = None,
) -> float:
    """scFID: the Fréchet distance of real and generated cells in the embedder's space.

    Args:
      real_expression: [n, genes] real cells, in whatever form `embedder` takes.
      generated_expression: [m, genes] generated cells, same genes and scale.
      embedder: any object with a `name` and `__call__([cells, genes]) -> [cells, d]`.
      dtype: as in `frechet_distance`.

    Returns:
      The distance (squared embedding units), >= 0.
    """
    embedded = []
    for name, cells in (("real", real_expression), ("generated", generated_expression)):
        vectors = embedder(cells)
        if np.ndim(vectors) != 2 or np.shape(vectors)[0] != np.shape(cells)[0]:
            raise InputError(
                f"embedder {embedder.name!r}: returned shape {np.shape(vectors)} for {name} "
                f"cells of shape {np.shape(cells)}; it must return [cells, dims]"
            )
        embedded.append(vectors)
    return frechet_distance(*embedded, dtype=dtype)
