"""pycnn._core max/average pooling, forward and backward, against the float64 NumPy reference.

Every test runs on the CPU's best SIMD path and on the baseline path (``isa`` fixture).
Max-pool inputs are distinct values (a shuffled arange plus noise) so no window has a tie
unless the test is about ties, and many are negative so a zero from padding would win if
the kernel let padding compete.
"""
from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from pycnn import _core

pytestmark = pytest.mark.usefixtures("isa")

FWD = dict(rtol=1e-5, atol=1e-5)
BWD = dict(rtol=1e-4, atol=1e-4)


def case(N, H, W, C, pool, strides=None, padding="valid", note=""):
    sid = f"{N}x{H}x{W}x{C}-p{pool}-s{strides}-{padding}" + (f"-{note}" if note else "")
    return pytest.param(N, H, W, C, pool, strides, padding, id=sid.replace(" ", ""))


CASES = [
    case(1, 4, 4, 1, 2, note="batch1-C1"),
    case(3, 7, 5, 3, 2, note="non-tiling-odd"),
    case(2, 6, 7, 3, 3, 1, note="overlapping"),
    case(2, 9, 8, 2, (3, 2), (2, 3), note="rect-stride!=pool"),
    case(2, 8, 9, 3, 3, 2, note="overlap-stride2"),
    case(2, 5, 4, 3, (5, 4), note="out1x1"),
    case(2, 5, 5, 3, 2, 2, "same", note="asym-pad"),
    case(2, 7, 6, 3, 3, 2, "same", note="odd-window"),
    case(2, 6, 7, 2, (2, 4), 1, "same", note="even-window-overlap"),
    case(1, 3, 3, 2, 4, 1, "same", note="window-larger-than-input"),
    case(64, 32, 32, 6, 2, note="lenet-pool1"),
    case(64, 12, 12, 16, 2, note="lenet-pool2"),
    case(4, 15, 13, 64, 3, 2, "same", note="wide"),
]
ARGS = "N,H,W,C,pool,strides,padding"


def distinct(rng, shape, spacing=0.01):
    """float32 values at least `spacing` apart, half of them negative, in random order."""
    n = int(np.prod(shape))
    v = (rng.permutation(n) - n / 2) * spacing + rng.uniform(0, spacing / 10, n)
    return v.astype(np.float32).reshape(shape)


@pytest.mark.parametrize(ARGS, CASES)
def test_maxpool2d_forward(N, H, W, C, pool, strides, padding, rng):
    x = distinct(rng, (N, H, W, C))
    out, argmax = _core.maxpool2d_forward(x, pool, strides, padding)
    rout, rargmax = ref.maxpool2d_forward(x, pool, strides, padding)
    assert out.dtype == np.float32 and argmax.dtype == np.int32
    np.testing.assert_array_equal(out, rout)  # a max is exact
    np.testing.assert_array_equal(argmax, rargmax)


@pytest.mark.parametrize(ARGS, CASES)
def test_maxpool2d_backward(N, H, W, C, pool, strides, padding, rng):
    x = distinct(rng, (N, H, W, C))
    out, argmax = _core.maxpool2d_forward(x, pool, strides, padding)
    G = rng.standard_normal(out.shape).astype(np.float32)
    dinp = _core.maxpool2d_backward(G, argmax, x.shape, pool, strides, padding)
    _, rargmax = ref.maxpool2d_forward(x, pool, strides, padding)
    assert dinp.dtype == np.float32
    ref.assert_close(dinp, ref.maxpool2d_backward(G, rargmax, x.shape, pool, strides, padding), name="dinp", **BWD)


@pytest.mark.parametrize(ARGS, CASES)
def test_avgpool2d_forward(N, H, W, C, pool, strides, padding, rng):
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    out = _core.avgpool2d_forward(x, pool, strides, padding)
    assert out.dtype == np.float32
    ref.assert_close(out, ref.avgpool2d_forward(x, pool, strides, padding), name="out", **FWD)


@pytest.mark.parametrize(ARGS, CASES)
def test_avgpool2d_backward(N, H, W, C, pool, strides, padding, rng):
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    out = _core.avgpool2d_forward(x, pool, strides, padding)
    G = rng.standard_normal(out.shape).astype(np.float32)
    dinp = _core.avgpool2d_backward(G, x.shape, pool, strides, padding)
    assert dinp.dtype == np.float32
    ref.assert_close(dinp, ref.avgpool2d_backward(G, x.shape, pool, strides, padding), name="dinp", **BWD)


def test_maxpool2d_ties_go_to_first_maximum_in_row_major_scan():
    x = np.array([[0, 5, 5], [5, 1, 5], [2, 5, 5]], dtype=np.float32).reshape(1, 3, 3, 1)
    out, argmax = _core.maxpool2d_forward(x, 2, 1)
    np.testing.assert_array_equal(out[0, :, :, 0], [[5, 5], [5, 5]])
    np.testing.assert_array_equal(argmax[0, :, :, 0], [[1, 1], [3, 5]])
    dinp = _core.maxpool2d_backward(np.ones_like(out), argmax, x.shape, 2, 1)
    np.testing.assert_array_equal(dinp[0, :, :, 0], [[0, 2, 0], [1, 0, 1], [0, 0, 0]])


@pytest.mark.parametrize("pool,strides,padding", [(2, None, "valid"), (3, 1, "valid"), (3, 2, "same"), (2, 1, "same")])
def test_maxpool2d_ties_random(pool, strides, padding, rng):
    """Values from {0, 1, 2}: most windows tie; argmax must follow the reference's first-max rule."""
    x = rng.integers(0, 3, (3, 7, 6, 5)).astype(np.float32)
    out, argmax = _core.maxpool2d_forward(x, pool, strides, padding)
    rout, rargmax = ref.maxpool2d_forward(x, pool, strides, padding)
    np.testing.assert_array_equal(out, rout)
    np.testing.assert_array_equal(argmax, rargmax)


def test_maxpool2d_same_padding_never_wins():
    x = -np.arange(1, 1 + 2 * 5 * 5 * 3, dtype=np.float32).reshape(2, 5, 5, 3)  # all negative
    out, argmax = _core.maxpool2d_forward(x, 2, 2, "same")
    rout, rargmax = ref.maxpool2d_forward(x, 2, 2, "same")
    assert np.all(out < 0)
    np.testing.assert_array_equal(out, rout)
    np.testing.assert_array_equal(argmax, rargmax)


def test_avgpool2d_same_divides_by_real_elements():
    x = np.ones((1, 5, 5, 2), dtype=np.float32)
    out = _core.avgpool2d_forward(x, 2, 2, "same")  # the last row/column windows cover padding
    np.testing.assert_array_equal(out, np.ones((1, 3, 3, 2), dtype=np.float32))


@pytest.mark.parametrize("pool,strides,padding", [(2, None, "valid"), (3, 1, "valid"), (3, 2, "same")])
def test_pool_float32_finite_difference_spot_check(pool, strides, padding, rng):
    """~20 input coordinates: the float32 kernels' gradients vs their own finite differences."""
    # 0.1 apart, so a 1e-2 step never changes which element wins a window
    x = distinct(rng, (2, 7, 6, 3), spacing=0.1)
    out, argmax = _core.maxpool2d_forward(x, pool, strides, padding)
    G = rng.standard_normal(out.shape)
    idx = ref.random_indices(rng, x.shape, 20)
    dinp = _core.maxpool2d_backward(G, argmax, x.shape, pool, strides, padding)
    num = ref.numerical_gradient(
        lambda: np.sum(_core.maxpool2d_forward(x, pool, strides, padding)[0].astype(np.float64) * G), x, 1e-2, idx)
    assert ref.rel_error(num, [dinp[i] for i in idx]) < 1e-2, "maxpool dinp"

    dinp = _core.avgpool2d_backward(G, x.shape, pool, strides, padding)
    num = ref.numerical_gradient(
        lambda: np.sum(_core.avgpool2d_forward(x, pool, strides, padding).astype(np.float64) * G), x, 1e-2, idx)
    assert ref.rel_error(num, [dinp[i] for i in idx]) < 1e-2, "avgpool dinp"


LECTURE_X = np.array([[1, 5, 3, 7], [7, 3, 9, 2], [3, 5, 8, 4], [8, 7, 3, 5]], dtype=np.float32).reshape(1, 4, 4, 1)


def test_maxpool2d_lecture_walkthrough():
    """MaxPooling2D(pool_size=2, strides=2) on the lecture's 4x4 example, MSE against ones."""
    out, argmax = _core.maxpool2d_forward(LECTURE_X, 2, 2)
    np.testing.assert_array_equal(out[0, :, :, 0], [[7, 9], [8, 8]])
    assert np.mean((out.astype(np.float64) - 1) ** 2) == 49.5
    dout = (2 * (out - 1) / out.size).astype(np.float32)
    np.testing.assert_array_equal(dout[0, :, :, 0], [[3, 4], [3.5, 3.5]])
    dx = _core.maxpool2d_backward(dout, argmax, LECTURE_X.shape, 2, 2)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 3.5, 0], [3.5, 0, 0, 0]])


def test_avgpool2d_lecture_walkthrough():
    """AveragePooling2D(pool_size=2, strides=2) on the lecture's 4x4 example, MSE against ones."""
    out = _core.avgpool2d_forward(LECTURE_X, 2, 2)
    np.testing.assert_array_equal(out[0, :, :, 0], [[4, 5.25], [5.75, 5]])
    assert np.mean((out.astype(np.float64) - 1) ** 2) == 16.40625
    dout = (2 * (out - 1) / out.size).astype(np.float32)
    np.testing.assert_array_equal(dout[0, :, :, 0], [[1.5, 2.125], [2.375, 2]])
    dx = _core.avgpool2d_backward(dout, LECTURE_X.shape, 2, 2)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.375, 0.375, 0.53125, 0.53125], [0.375, 0.375, 0.53125, 0.53125],
                                                   [0.59375, 0.59375, 0.5, 0.5], [0.59375, 0.59375, 0.5, 0.5]])
