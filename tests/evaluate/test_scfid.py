"""Fréchet distance against the scipy.linalg.sqrtm route in float64, closed forms, and the
checks on bad input."""

import warnings

import jax
import numpy as np
import pytest
import scipy.linalg

from c2s_jax.errors import InputError
from c2s_jax.evaluate.scfid import frechet_distance, scfid

pytestmark = pytest.mark.usefixtures("single_threaded_blas")


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The usual FID code path: np.cov, scipy sqrtm of S1 S2, its real trace, in float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean).real)


def _samples(kind: str, n: int, m: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix_a, mix_b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    if kind == "gaussians":
        return rng.standard_normal((n, d)) @ mix_a + 2.0, rng.standard_normal((m, d)) @ mix_b
    if kind == "skewed":  # gamma and log-normal, far from Gaussian, offset from the origin
        return rng.gamma(2.0, size=(n, d)) @ mix_a + 5.0, rng.lognormal(size=(m, d)) @ mix_b
    # "close": both from the same law, so the traces nearly cancel
    return rng.standard_normal((n, d)) @ mix_a, rng.standard_normal((m, d)) @ mix_a


# Two widths only: the distance step compiles once per (d, dtype), whatever n and m.
CASES = [
    ("gaussians", 300, 200, 16, 0),
    ("gaussians", 500, 700, 48, 1),
    ("skewed", 400, 300, 16, 2),
    ("skewed", 900, 600, 48, 3),
]


@pytest.mark.parametrize(("kind", "n", "m", "d", "seed"), CASES)
def test_matches_scipy_sqrtm_in_float64_and_float32(kind, n, m, d, seed):
    a, b = _samples(kind, n, m, d, seed)
    expected = reference_fid(a, b)
    with jax.enable_x64(True):
        ours64 = frechet_distance(a, b)
    ours32 = frechet_distance(a.astype(np.float32), b.astype(np.float32))
    assert abs(ours64 - expected) <= 1e-5 * expected
    assert abs(ours32 - expected) <= 1e-3 * expected


def test_near_identical_samples_float64_exact_float32_bounded_by_the_traces():
    # FID ~ 1 against traces ~ 500: float32 keeps an absolute error near 1e-5 of the traces
    # (eigenvalue rounding), so such comparisons belong in float64.
    a, b = _samples("close", 2000, 1500, 16, 4)
    expected = reference_fid(a, b)
    with jax.enable_x64(True):
        assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-5)
    traces = np.trace(np.cov(a, rowvar=False)) + np.trace(np.cov(b, rowvar=False))
    assert expected < 0.01 * traces
    ours32 = frechet_distance(a.astype(np.float32), b.astype(np.float32))
    assert abs(ours32 - expected) <= 1e-4 * traces


def test_same_sample_is_zero_even_when_rank_deficient():
    rng = np.random.default_rng(5)
    full_rank = rng.standard_normal((200, 16)) * 3.0 + 1.0
    with jax.enable_x64(True):
        assert frechet_distance(full_rank, full_rank) == pytest.approx(0.0, abs=1e-9)
    few_rows = rng.standard_normal((20, 48)) @ rng.standard_normal((48, 48))
    scale = np.trace(np.cov(few_rows, rowvar=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fid32 = frechet_distance(few_rows.astype(np.float32), few_rows.astype(np.float32))
    messages = sorted(str(w.message) for w in caught)
    assert [m.split(": n=20 rows for d=48")[0] for m in messages] == ["generated", "real"]
    assert 0.0 <= fid32 <= 1e-4 * scale
    many_rows = rng.standard_normal((100, 48))
    with jax.enable_x64(True), pytest.warns(UserWarning, match=r"generated: n=20 rows for d=48"):
        fid64 = frechet_distance(many_rows, few_rows)
    assert fid64 == pytest.approx(reference_fid(many_rows, few_rows), rel=1e-6)


def test_symmetric():
    a, b = _samples("skewed", 300, 250, 16, 6)
    with jax.enable_x64(True):
        assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-10)


def _with_moments(mean: np.ndarray, std: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n rows whose sample mean is `mean` and sample covariance exactly diag(std^2)."""
    rng = np.random.default_rng(seed)
    raw = rng.standard_normal((n, len(mean)))
    orthonormal, _ = np.linalg.qr(raw - raw.mean(0))  # zero-mean orthonormal columns
    return orthonormal * np.sqrt(n - 1) * std + mean


def test_diagonal_gaussians_closed_form():
    # For diagonal covariances tr sqrt(S1 S2) = sum s1 s2, so FID = |dmu|^2 + sum (s1 - s2)^2.
    rng = np.random.default_rng(7)
    mean_a, mean_b = rng.normal(size=16), rng.normal(size=16)
    std_a, std_b = rng.uniform(0.5, 3, 16), rng.uniform(0.5, 3, 16)
    a, b = _with_moments(mean_a, std_a, 50, 8), _with_moments(mean_b, std_b, 80, 9)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((std_a - std_b) ** 2)
    with jax.enable_x64(True):
        assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_bad_input_names_the_argument():
    good = np.ones((5, 3)) + np.arange(15).reshape(5, 3) ** 2
    with pytest.raises(InputError, match=r"real: expected a 2-D array"):
        frechet_distance(np.ones(5), good)
    with pytest.raises(InputError, match=r"generated: has d=4 columns but real has d=3"):
        frechet_distance(good, np.ones((5, 4)))
    with pytest.raises(InputError, match=r"generated: needs at least 2 rows"):
        frechet_distance(good, np.ones((1, 3)))
    broken = good.copy()
    broken[3, 1] = np.nan
    with pytest.raises(InputError, match=r"real: contains NaN or inf \(first in row 3\)"):
        frechet_distance(broken, good)
    with pytest.raises(InputError, match=r"dtype=float64 needs 64-bit JAX"):
        frechet_distance(good, good, dtype=np.float64)


class _Columns:
    """An embedder keeping some columns of the expression."""

    def __init__(self, columns, name):
        self.columns, self.name = columns, name

    def __call__(self, expression):
        return np.asarray(expression)[:, self.columns]


def test_scfid_embeds_both_sides_with_the_same_embedder():
    a, b = _samples("gaussians", 200, 150, 20, 10)
    first16 = _Columns(slice(0, 16), "first16")
    assert scfid(a, b, first16) == pytest.approx(reference_fid(a[:, :16], b[:, :16]), rel=1e-3)
    with pytest.raises(InputError, match=r"embedder 'flat': returned shape \(200,\)"):
        scfid(a, b, _Columns(0, "flat"))
