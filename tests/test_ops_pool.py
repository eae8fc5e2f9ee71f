"""The maxpool2d, avgpool2d, global_maxpool2d and global_avgpool2d ops (pycnn.ops) against the
float64 oracle.

Every test runs on the CPU's best SIMD path, AVX2 and the baseline path (``isa`` fixture).
Max-pool inputs are distinct values (a shuffled arange plus noise) so no window has a tie
unless the test is about ties, and many are negative so a zero from padding would win if
the kernel let padding compete. The winner of a window is not returned: it shows in the
gradient, which goes to the first maximum in a row-major scan of the window.
"""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from op_harness import BWD, check_backward, check_forward, check_spot_fd, f32, make_call
from pycnn import ops

pytestmark = pytest.mark.usefixtures("isa")


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


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


def attrs_of(pool, strides=None, padding="valid"):
    return dict(pool_size=_pair(pool), strides=_pair(pool if strides is None else strides), padding=padding)


def distinct(rng, shape, spacing=0.01):
    """float32 values at least `spacing` apart, half of them negative, in random order."""
    n = int(np.prod(shape))
    v = (rng.permutation(n) - n / 2) * spacing + rng.uniform(0, spacing / 10, n)
    return f32(v.reshape(shape))


@pytest.mark.parametrize(ARGS, CASES)
def test_maxpool2d_forward(N, H, W, C, pool, strides, padding, rng):
    x = distinct(rng, (N, H, W, C))
    out, _, _ = check_forward("maxpool2d", [x], [], attrs_of(pool, strides, padding))
    np.testing.assert_array_equal(out, oracle.maxpool2d_forward(x, pool, strides, padding))  # a max is exact


@pytest.mark.parametrize(ARGS, CASES)
def test_maxpool2d_backward(N, H, W, C, pool, strides, padding, rng):
    x = distinct(rng, (N, H, W, C))
    check_backward("maxpool2d", [x], [], attrs_of(pool, strides, padding), rng)


@pytest.mark.parametrize(ARGS, CASES)
def test_avgpool2d_forward(N, H, W, C, pool, strides, padding, rng):
    x = f32(rng.standard_normal((N, H, W, C)))
    check_forward("avgpool2d", [x], [], attrs_of(pool, strides, padding))


@pytest.mark.parametrize(ARGS, CASES)
def test_avgpool2d_backward(N, H, W, C, pool, strides, padding, rng):
    x = f32(rng.standard_normal((N, H, W, C)))
    check_backward("avgpool2d", [x], [], attrs_of(pool, strides, padding), rng)


def test_pool_defaults_are_2x2_windows_with_stride_2(rng):
    x = distinct(rng, (2, 5, 7, 3))
    np.testing.assert_array_equal(ops.run("maxpool2d", [x]), oracle.maxpool2d_forward(x, 2))
    np.testing.assert_allclose(ops.run("avgpool2d", [x]), oracle.avgpool2d_forward(x, 2), rtol=1e-6)


def _max_gradient(x, attrs, dout=None):
    call = make_call("maxpool2d", [x], [], attrs)
    out, tape = call.forward([x])
    (dinp,), _ = call.backward(tape, np.ones_like(out) if dout is None else dout)
    return out, dinp


def test_maxpool2d_ties_go_to_first_maximum_in_row_major_scan():
    x = np.array([[0, 5, 5], [5, 1, 5], [2, 5, 5]], dtype=np.float32).reshape(1, 3, 3, 1)
    out, dinp = _max_gradient(x, attrs_of(2, 1))
    np.testing.assert_array_equal(out[0, :, :, 0], [[5, 5], [5, 5]])
    # windows: (0,0) -> first 5 at (0,1); (0,1) -> (0,1); (1,0) -> (1,0); (1,1) -> (1,2)
    np.testing.assert_array_equal(dinp[0, :, :, 0], [[0, 2, 0], [1, 0, 1], [0, 0, 0]])


@pytest.mark.parametrize("pool,strides,padding", [(2, None, "valid"), (3, 1, "valid"), (3, 2, "same"), (2, 1, "same")])
def test_maxpool2d_ties_random(pool, strides, padding, rng):
    """Values from {0, 1, 2}: most windows tie; the gradient follows the oracle's first-max rule,
    with a random dout so that which input receives which dout element shows."""
    x = f32(rng.integers(0, 3, (3, 7, 6, 5)))
    attrs = attrs_of(pool, strides, padding)
    G = f32(rng.standard_normal(oracle.maxpool2d_forward(x, pool, strides, padding).shape))
    out, dinp = _max_gradient(x, attrs, G)
    np.testing.assert_array_equal(out, oracle.maxpool2d_forward(x, pool, strides, padding))
    oracle.assert_close(dinp, oracle.maxpool2d_backward(G, x, pool, strides, padding), name="dinp", **BWD)


def test_maxpool2d_same_padding_never_wins(rng):
    x = -np.arange(1, 1 + 2 * 5 * 5 * 3, dtype=np.float32).reshape(2, 5, 5, 3)  # all negative
    out, _, _ = check_forward("maxpool2d", [x], [], attrs_of(2, 2, "same"))
    assert np.all(out < 0)
    np.testing.assert_array_equal(out, oracle.maxpool2d_forward(x, 2, 2, "same"))
    check_backward("maxpool2d", [x], [], attrs_of(2, 2, "same"), rng)


def test_avgpool2d_same_divides_by_real_elements():
    x = np.ones((1, 5, 5, 2), dtype=np.float32)
    out = ops.run("avgpool2d", [x], attrs=attrs_of(2, 2, "same"))  # the last row/column windows cover padding
    np.testing.assert_array_equal(out, np.ones((1, 3, 3, 2), dtype=np.float32))


@pytest.mark.parametrize("pool,strides,padding", [(2, None, "valid"), (3, 1, "valid"), (3, 2, "same")])
def test_pool_float32_finite_difference_spot_check(pool, strides, padding, rng):
    """~20 input coordinates: the float32 ops' gradients vs their own finite differences."""
    # 0.1 apart, so a 1e-2 step never changes which element wins a window
    x = distinct(rng, (2, 7, 6, 3), spacing=0.1)
    check_spot_fd("maxpool2d", [x], [], attrs_of(pool, strides, padding), rng)
    check_spot_fd("avgpool2d", [x], [], attrs_of(pool, strides, padding), rng)


# ----------------------------------------------------------------------------- global pooling

GLOBAL_SHAPES = [(1, 1, 1, 1), (2, 5, 7, 3), (3, 1, 6, 4), (4, 8, 8, 64), (64, 4, 4, 130)]


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("shape", GLOBAL_SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["global_maxpool2d", "global_avgpool2d"])
def test_global_pooling(kind, shape, keepdims, rng):
    x = distinct(rng, shape) if kind == "global_maxpool2d" else f32(rng.standard_normal(shape))
    out, _, _ = check_forward(kind, [x], [], {"keepdims": keepdims})
    assert out.shape == ((shape[0], 1, 1, shape[3]) if keepdims else (shape[0], shape[3]))
    check_backward(kind, [x], [], {"keepdims": keepdims}, rng)


def test_global_maxpool2d_ties_go_to_the_first_maximum():
    x = np.array([[1, 3, 3], [3, 0, 3]], np.float32).reshape(1, 2, 3, 1)
    call = make_call("global_maxpool2d", [x], [], {})
    out, tape = call.forward([x])
    (dinp,), _ = call.backward(tape, np.full((1, 1), 7.0, np.float32))
    np.testing.assert_array_equal(dinp[0, :, :, 0], [[0, 7, 0], [0, 0, 0]])


def test_global_pooling_float32_finite_difference_spot_check(rng):
    x = distinct(rng, (2, 4, 5, 3), spacing=0.1)
    for kind in ("global_maxpool2d", "global_avgpool2d"):
        check_spot_fd(kind, [x], [], {"keepdims": 1}, rng)


# ----------------------------------------------------------------------------- the lecture's examples

LECTURE_X = np.array([[1, 5, 3, 7], [7, 3, 9, 2], [3, 5, 8, 4], [8, 7, 3, 5]], dtype=np.float32).reshape(1, 4, 4, 1)


@pytest.mark.parametrize("kind", ["maxpool2d", "avgpool2d"])
def test_pooling_lecture_walkthrough(kind):
    """MaxPooling2D / AveragePooling2D(pool_size=2, strides=2) on the lecture's 4x4 example, MSE against ones."""
    call = make_call(kind, [LECTURE_X], [], attrs_of(2, 2))
    out, tape = call.forward([LECTURE_X])
    dout = (2 * (out - 1) / out.size).astype(np.float32)
    (dx,), _ = call.backward(tape, dout)
    if kind == "maxpool2d":
        np.testing.assert_array_equal(out[0, :, :, 0], [[7, 9], [8, 8]])
        assert np.mean((out.astype(np.float64) - 1) ** 2) == 49.5
        np.testing.assert_array_equal(dout[0, :, :, 0], [[3, 4], [3.5, 3.5]])
        np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 3.5, 0], [3.5, 0, 0, 0]])
    else:
        np.testing.assert_array_equal(out[0, :, :, 0], [[4, 5.25], [5.75, 5]])
        assert np.mean((out.astype(np.float64) - 1) ** 2) == 16.40625
        np.testing.assert_array_equal(dout[0, :, :, 0], [[1.5, 2.125], [2.375, 2]])
        np.testing.assert_array_equal(dx[0, :, :, 0], [[0.375, 0.375, 0.53125, 0.53125],
                                                       [0.375, 0.375, 0.53125, 0.53125],
                                                       [0.59375, 0.59375, 0.5, 0.5], [0.59375, 0.59375, 0.5, 0.5]])
