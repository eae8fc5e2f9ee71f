"""Numerical helpers of the oracle: float64 conversion, central finite differences, the
normwise relative error, random coordinates, and the float32-vs-float64 comparison the
tests share (house style, section 6)."""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import numpy as np


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6,
                       indices: Optional[Iterable[Sequence[int]]] = None) -> np.ndarray:
    """Central finite differences (f(x + h e_i) - f(x - h e_i)) / (2h) of a scalar function.

    ``f`` takes no arguments and reads ``x``, which is perturbed in place one element at a
    time and restored. ``indices`` (tuples into x) limits the elements; by default every
    element is differentiated and the result has x's shape, otherwise it is a 1-D float64
    array in the order of ``indices``. The step actually taken is measured after rounding to
    x's dtype, so float32 inputs get an exact denominator.
    """
    full = indices is None
    idx_list = list(np.ndindex(x.shape)) if full else [tuple(i) for i in indices]
    grads = np.empty(len(idx_list))
    for j, idx in enumerate(idx_list):
        old = x[idx].copy()
        x[idx] = old + eps
        hi = float(x[idx])
        f_plus = float(f())
        x[idx] = old - eps
        lo = float(x[idx])
        f_minus = float(f())
        x[idx] = old
        grads[j] = (f_plus - f_minus) / (hi - lo)
    return grads.reshape(x.shape) if full else grads


def rel_error(a, b) -> float:
    """Normwise relative error max|a - b| / max(max|a|, max|b|).

    Normwise rather than element-wise: a gradient entry that is tiny because of
    cancellation carries the absolute error of its large neighbours.
    """
    a, b = _f64(a), _f64(b)
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0), 1e-30)
    return float(np.max(np.abs(a - b), initial=0.0) / scale)


def random_indices(rng: np.random.Generator, shape: Sequence[int], count: int) -> list:
    """``count`` distinct random index tuples into an array of ``shape`` (fewer if it is smaller)."""
    size = int(np.prod(shape))
    flat = rng.choice(size, size=min(count, size), replace=False)
    return [tuple(int(v) for v in np.unravel_index(i, shape)) for i in flat]


def fd_check(loss: Callable[[], float], arrays, grads, names, eps: float = 1e-6, tol: float = 1e-6) -> None:
    """Finite-difference every array of ``arrays`` (float64, perturbed in place by
    :func:`numerical_gradient`) and require a normwise relative error below ``tol`` against
    the analytic ``grads``."""
    for x, g, name in zip(arrays, grads, names):
        num = numerical_gradient(loss, x, eps=eps)
        err = rel_error(num, g)
        assert err < tol, f"{name}: finite-difference relative error {err:.3g}"


def linear_map_matrix(f, shape) -> np.ndarray:
    """The matrix of a map f that is affine in its argument: column k is f(e_k) - f(0)."""
    size = int(np.prod(shape))
    base = f(np.zeros(shape)).reshape(-1)
    cols = []
    for k in range(size):
        e = np.zeros(size)
        e[k] = 1.0
        cols.append(f(e.reshape(shape)).reshape(-1) - base)
    return np.stack(cols, axis=1)


def assert_close(actual, expected, rtol: float, atol: float, name: str = "", scale_atol: bool = False) -> None:
    """np.testing-style |actual - expected| <= atol_eff + rtol * |expected|, element-wise.

    scale_atol=True multiplies atol by max(1, rms(expected)). Use it for outputs that are
    long float32 reductions (batch sums in dweight/dbias): the rounding error of a sum is
    proportional to the size of its partial sums, which is the typical magnitude of the
    entries (it grows like sqrt(reduction length) for random data), not to the entry
    itself, so an entry that is near zero by cancellation carries its neighbours' absolute
    error. Measured against the array's RMS this stays a 1e-4-relative check.
    """
    actual = np.asarray(actual)
    expected = _f64(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != expected {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{name}: non-finite values in the result"
    atol_eff = atol
    if scale_atol and expected.size:
        atol_eff = atol * max(1.0, float(np.sqrt(np.mean(expected * expected))))
    err = np.abs(actual.astype(np.float64) - expected)
    bad = err > atol_eff + rtol * np.abs(expected)
    if bad.any():
        i = np.unravel_index(int(np.argmax(np.where(bad, err, -1.0))), err.shape)
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {err.size} elements differ beyond rtol={rtol}, atol={atol_eff:.3g}; "
            f"max abs error {err.max():.3g}; worst mismatch at {tuple(int(v) for v in i)}: "
            f"actual={float(actual[i]):.9g}, expected={float(expected[i]):.9g}")
