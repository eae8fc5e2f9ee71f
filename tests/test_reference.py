"""Checks of the float64 NumPy oracle itself (tests/reference.py), independent of the C++ core.

Forward: window arithmetic by hand, conv/pool against direct scalar loops, and (when
importable) PyTorch. Backward: central finite differences (eps=1e-6, normwise relative
error below 1e-6) of loss = sum(out * G) with a random upstream gradient G, on tiny shapes
chosen to avoid kinks (distinct max-pool values, ReLU pre-activations away from 0).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import reference as ref

EPS = 1e-6
TOL = 1e-6


def fd_check(loss, arrays, grads, names):
    """Finite-difference every array in ``arrays`` and compare with the analytic ``grads``."""
    for x, g, name in zip(arrays, grads, names):
        num = ref.numerical_gradient(loss, x, eps=EPS)
        err = ref.rel_error(num, g)
        assert err < TOL, f"{name}: finite-difference relative error {err:.3g}"


# ----------------------------------------------------------------------------- window arithmetic


@pytest.mark.parametrize("in_size,k,s,expected", [
    (5, 3, 1, (1, 1)),
    (5, 2, 1, (0, 1)),   # even kernel: the odd pixel goes after (bottom/right)
    (7, 3, 2, (1, 1)),   # out 4: (4-1)*2 + 3 - 7 = 2
    (8, 3, 2, (0, 1)),   # out 4: (4-1)*2 + 3 - 8 = 1
    (3, 5, 1, (2, 2)),   # window larger than the input
    (9, 2, 3, (0, 0)),   # stride > window: no padding needed
    (32, 5, 1, (2, 2)),
    (1, 1, 1, (0, 0)),
])
def test_same_padding(in_size, k, s, expected):
    assert ref.same_padding(in_size, k, s) == expected


@pytest.mark.parametrize("in_size,k,s,padding,expected", [
    (32, 5, 1, "valid", 28), (32, 5, 1, "same", 32), (7, 2, 2, "valid", 3), (7, 2, 2, "same", 4),
    (5, 5, 1, "valid", 1), (6, 3, 4, "valid", 1), (6, 3, 4, "same", 2), (4, 5, 1, "valid", 0),
])
def test_output_size(in_size, k, s, padding, expected):
    assert ref.output_size(in_size, k, s, padding) == expected


# ----------------------------------------------------------------------------- forward vs direct loops


def conv_direct(x, w, b, strides, padding):
    """conv2d by its scalar definition, seven nested loops, zero padding by bounds checks."""
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    SH, SW = strides
    OH, OW = ref.output_size(H, KH, SH, padding), ref.output_size(W, KW, SW, padding)
    PT = ref.same_padding(H, KH, SH)[0] if padding == "same" else 0
    PL = ref.same_padding(W, KW, SW)[0] if padding == "same" else 0
    out = np.zeros((N, OH, OW, F))
    for n, oh, ow, f in itertools.product(range(N), range(OH), range(OW), range(F)):
        s = 0.0 if b is None else b[f]
        for kh, kw, c in itertools.product(range(KH), range(KW), range(C)):
            ih, iw = oh * SH + kh - PT, ow * SW + kw - PL
            if 0 <= ih < H and 0 <= iw < W:
                s += x[n, ih, iw, c] * w[kh, kw, c, f]
        out[n, oh, ow, f] = s
    return out


CONV_TINY = [
    # N, H, W, C, KH, KW, F, strides, padding
    (1, 4, 4, 1, 2, 2, 1, (1, 1), "valid"),
    (2, 5, 4, 2, 3, 3, 2, (1, 1), "valid"),
    (2, 6, 5, 2, 3, 2, 3, (2, 1), "valid"),
    (2, 5, 6, 2, 2, 2, 2, (1, 1), "same"),
    (1, 5, 4, 3, 4, 3, 2, (2, 2), "same"),
    (2, 3, 2, 1, 5, 5, 2, (1, 1), "same"),
    (1, 4, 5, 3, 1, 1, 2, (2, 2), "valid"),
]


@pytest.mark.parametrize("case", CONV_TINY, ids=lambda c: "x".join(map(str, c[:7])) + f"-s{c[7][0]}{c[7][1]}-{c[8]}")
def test_conv_forward_matches_direct_loops(case, rng):
    N, H, W, C, KH, KW, F, strides, padding = case
    x = rng.standard_normal((N, H, W, C))
    w = rng.standard_normal((KH, KW, C, F))
    b = rng.standard_normal(F)
    got = ref.conv2d_forward(x, w, b, strides, padding)
    np.testing.assert_allclose(got, conv_direct(x, w, b, strides, padding), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("H,W,pool,strides,padding", [
    (4, 4, (2, 2), None, "valid"), (5, 7, (2, 2), None, "valid"), (5, 6, (3, 3), (1, 1), "valid"),
    (5, 5, (2, 3), (2, 1), "same"), (4, 6, (3, 2), (2, 2), "same"), (3, 3, (4, 4), (1, 1), "same"),
])
def test_pool_forward_matches_direct_loops(H, W, pool, strides, padding, rng):
    N, C = 2, 3
    x = rng.permutation(N * H * W * C).reshape(N, H, W, C) - 20.0  # distinct, many negative
    KH, KW = pool
    SH, SW = pool if strides is None else strides
    OH, OW = ref.output_size(H, KH, SH, padding), ref.output_size(W, KW, SW, padding)
    PT = ref.same_padding(H, KH, SH)[0] if padding == "same" else 0
    PL = ref.same_padding(W, KW, SW)[0] if padding == "same" else 0
    mx, av = np.empty((N, OH, OW, C)), np.empty((N, OH, OW, C))
    for n, oh, ow, c in itertools.product(range(N), range(OH), range(OW), range(C)):
        vals = [x[n, ih, iw, c] for ih in range(oh * SH - PT, oh * SH - PT + KH)
                for iw in range(ow * SW - PL, ow * SW - PL + KW) if 0 <= ih < H and 0 <= iw < W]
        mx[n, oh, ow, c], av[n, oh, ow, c] = max(vals), sum(vals) / len(vals)
    out, argmax = ref.maxpool2d_forward(x, pool, strides, padding)
    np.testing.assert_array_equal(out, mx)
    np.testing.assert_array_equal(x.reshape(N, -1)[np.arange(N)[:, None], argmax.reshape(N, -1)],
                                  out.reshape(N, -1))
    np.testing.assert_allclose(ref.avgpool2d_forward(x, pool, strides, padding), av, rtol=1e-13)


def test_maxpool_tie_goes_to_first_in_row_major_scan():
    x = np.array([[0, 5, 5], [5, 1, 5], [2, 5, 5]], dtype=np.float64).reshape(1, 3, 3, 1)
    out, argmax = ref.maxpool2d_forward(x, 2, strides=1)
    np.testing.assert_array_equal(out[0, :, :, 0], [[5, 5], [5, 5]])
    # windows: (0,0)->first 5 at (0,1); (0,1)->(0,1); (1,0)->(1,0); (1,1)->(1,2)
    np.testing.assert_array_equal(argmax[0, :, :, 0], [[1, 1], [3, 5]])


def test_softmax_is_stable_for_large_logits():
    np.testing.assert_allclose(ref.softmax_forward([1.0, 2.0, 3.0]),
                               [0.09003057, 0.24472847, 0.66524096], atol=5e-9)
    np.testing.assert_allclose(ref.softmax_forward([1000.0, 1001.0, 1002.0]),
                               [0.09003057, 0.24472847, 0.66524096], atol=5e-9)
    loss, _ = ref.softmax_crossentropy_forward([[1000.0, 0.0]], [1])
    assert loss == pytest.approx(1000.0)


torch = None
try:  # optional cross-check only; torch is never a pycnn dependency
    import torch
    import torch.nn.functional as torch_f
except Exception:  # pragma: no cover - depends on the machine
    torch = None


@pytest.mark.skipif(torch is None, reason="torch is not importable")
@pytest.mark.parametrize("case", CONV_TINY + [(3, 9, 8, 4, 3, 3, 5, (2, 2), "same"),
                                              (2, 10, 11, 3, 4, 2, 4, (3, 2), "same")])
def test_conv_and_pool_forward_match_torch(case, rng):
    N, H, W, C, KH, KW, F, strides, padding = case
    x = rng.standard_normal((N, H, W, C))
    w = rng.standard_normal((KH, KW, C, F))
    b = rng.standard_normal(F)
    PT, PB = ref.same_padding(H, KH, strides[0]) if padding == "same" else (0, 0)
    PL, PR = ref.same_padding(W, KW, strides[1]) if padding == "same" else (0, 0)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    conv = torch_f.conv2d(torch_f.pad(xt, (PL, PR, PT, PB)), torch.from_numpy(w).permute(3, 2, 0, 1),
                          torch.from_numpy(b), stride=strides)
    np.testing.assert_allclose(ref.conv2d_forward(x, w, b, strides, padding),
                               conv.permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-10)
    # pooling with the same geometry: -inf padding for max; for avg, sum / number of real elements
    xp = torch_f.pad(xt, (PL, PR, PT, PB), value=-np.inf)
    mx = torch_f.max_pool2d(xp, (KH, KW), strides)
    np.testing.assert_array_equal(ref.maxpool2d_forward(x, (KH, KW), strides, padding)[0],
                                  mx.permute(0, 2, 3, 1).numpy())
    total = torch_f.avg_pool2d(torch_f.pad(xt, (PL, PR, PT, PB)), (KH, KW), strides) * (KH * KW)
    count = torch_f.avg_pool2d(torch_f.pad(torch.ones_like(xt), (PL, PR, PT, PB)), (KH, KW), strides) * (KH * KW)
    np.testing.assert_allclose(ref.avgpool2d_forward(x, (KH, KW), strides, padding),
                               (total / count).permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- finite differences


def away_from_zero(rng, draw, min_abs=1e-3, tries=200):
    """Redraw until draw(rng) returns (arrays, preactivation) with every |preactivation| >= min_abs."""
    for _ in range(tries):
        arrays, z = draw(rng)
        if np.min(np.abs(z)) >= min_abs:
            return arrays
    raise AssertionError("could not draw inputs away from the ReLU kink")


@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
@pytest.mark.parametrize("case", CONV_TINY, ids=lambda c: "x".join(map(str, c[:7])) + f"-s{c[7][0]}{c[7][1]}-{c[8]}")
def test_conv_backward_finite_differences(case, activation, rng):
    N, H, W, C, KH, KW, F, strides, padding = case

    def draw(r):
        x = r.standard_normal((N, H, W, C))
        w = r.standard_normal((KH, KW, C, F)) * 0.5
        b = r.standard_normal(F) * 0.5
        return (x, w, b), ref.conv2d_forward(x, w, b, strides, padding)

    x, w, b = away_from_zero(rng, draw)
    out = ref.conv2d_forward(x, w, b, strides, padding, activation)
    G = rng.standard_normal(out.shape)

    def loss():
        return np.sum(ref.conv2d_forward(x, w, b, strides, padding, activation) * G)

    dinp, dweight, dbias = ref.conv2d_backward(G, x, w, out, strides, padding, activation)
    fd_check(loss, [x, w, b], [dinp, dweight, dbias], ["dinp", "dweight", "dbias"])


def test_conv_backward_optional_outputs(rng):
    x, w = rng.standard_normal((2, 5, 5, 2)), rng.standard_normal((3, 3, 2, 3))
    G = rng.standard_normal((2, 3, 3, 3))
    full = ref.conv2d_backward(G, x, w)
    dinp, dweight, dbias = ref.conv2d_backward(G, x, w, has_bias=False, need_dinp=False)
    assert dinp is None and dbias is None
    np.testing.assert_array_equal(dweight, full[1])


POOL_TINY = [
    # H, W, pool, strides, padding
    (4, 4, 2, None, "valid"),
    (5, 7, (2, 2), None, "valid"),      # windows do not tile: last row/column dropped
    (5, 6, (3, 3), (1, 1), "valid"),    # overlapping windows
    (6, 5, (3, 2), (2, 3), "valid"),
    (5, 5, (2, 2), (2, 2), "same"),     # extra padding bottom/right
    (5, 6, (3, 3), (2, 1), "same"),
    (3, 3, (4, 4), (1, 1), "same"),     # window larger than input
    (2, 3, (2, 3), None, "valid"),      # output 1x1
]


@pytest.mark.parametrize("H,W,pool,strides,padding", POOL_TINY)
def test_maxpool_backward_finite_differences(H, W, pool, strides, padding, rng):
    N, C = 2, 2
    # distinct values 0.1 apart (plus small noise): no ties, and a 1e-6 step never changes a winner
    x = (rng.permutation(N * H * W * C) * 0.1 - 1.0 + rng.uniform(0, 0.01, N * H * W * C)).reshape(N, H, W, C)
    out, argmax = ref.maxpool2d_forward(x, pool, strides, padding)
    G = rng.standard_normal(out.shape)

    def loss():
        return np.sum(ref.maxpool2d_forward(x, pool, strides, padding)[0] * G)

    dinp = ref.maxpool2d_backward(G, argmax, x.shape, pool, strides, padding)
    fd_check(loss, [x], [dinp], ["dinp"])


@pytest.mark.parametrize("H,W,pool,strides,padding", POOL_TINY)
def test_avgpool_backward_finite_differences(H, W, pool, strides, padding, rng):
    x = rng.standard_normal((2, H, W, 2))
    out = ref.avgpool2d_forward(x, pool, strides, padding)
    G = rng.standard_normal(out.shape)

    def loss():
        return np.sum(ref.avgpool2d_forward(x, pool, strides, padding) * G)

    dinp = ref.avgpool2d_backward(G, x.shape, pool, strides, padding)
    fd_check(loss, [x], [dinp], ["dinp"])


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)])
def test_softmax_backward_finite_differences(shape, rng):
    x = rng.standard_normal(shape) * 2
    G = rng.standard_normal(shape)

    def loss():
        return np.sum(ref.softmax_forward(x) * G)

    dinp = ref.softmax_backward(G, ref.softmax_forward(x))
    fd_check(loss, [x], [dinp], ["dinp"])


@pytest.mark.parametrize("scale", [None, 1.0, 0.3])
def test_softmax_crossentropy_backward_finite_differences(scale, rng):
    N, K = 5, 4
    z = rng.standard_normal((N, K)) * 2
    labels = rng.integers(0, K, N)
    # the gradient is of scale * sum-loss; scale=None means the mean loss
    factor = 1.0 if scale is None else scale * N

    def loss():
        return factor * ref.softmax_crossentropy_forward(z, labels)[0]

    _, probs = ref.softmax_crossentropy_forward(z, labels)
    fd_check(loss, [z], [ref.softmax_crossentropy_backward(probs, labels, scale)], ["dlogits"])


def test_softmax_crossentropy_value(rng):
    z = rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 2])
    loss, probs = ref.softmax_crossentropy_forward(z, labels)
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(4), labels])), rel=1e-12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
@pytest.mark.parametrize("has_bias", [True, False])
def test_dense_backward_finite_differences(activation, has_bias, rng):
    N, IN, OUT = 3, 5, 4

    def draw(r):
        x, w, b = r.standard_normal((N, IN)), r.standard_normal((IN, OUT)), r.standard_normal(OUT)
        return (x, w, b), ref.dense_forward(x, w, b if has_bias else None)

    x, w, b = away_from_zero(rng, draw)
    bias = b if has_bias else None
    out = ref.dense_forward(x, w, bias, activation)
    G = rng.standard_normal(out.shape)

    def loss():
        return np.sum(ref.dense_forward(x, w, bias, activation) * G)

    dinp, dweight, dbias = ref.dense_backward(G, x, w, out, activation, has_bias=has_bias)
    arrays, grads, names = [x, w], [dinp, dweight], ["dinp", "dweight"]
    if has_bias:
        arrays, grads, names = arrays + [b], grads + [dbias], names + ["dbias"]
    else:
        assert dbias is None
    fd_check(loss, arrays, grads, names)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activation_backward_finite_differences(name, rng):
    x = rng.uniform(-3, 3, (4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # away from the ReLU kink
    G = rng.standard_normal(x.shape)
    forward, backward = getattr(ref, f"{name}_forward"), getattr(ref, f"{name}_backward")

    def loss():
        return np.sum(forward(x) * G)

    fd_check(loss, [x], [backward(G, forward(x))], ["dinp"])


def test_sigmoid_does_not_overflow():
    with np.errstate(over="raise"):
        y = ref.sigmoid_forward([-1000.0, 0.0, 1000.0])
    np.testing.assert_array_equal(y, [0.0, 0.5, 1.0])


def test_numerical_gradient_on_a_known_function():
    x = np.array([0.5, -1.0, 2.0])
    g = ref.numerical_gradient(lambda: np.sum(x ** 3), x, eps=1e-6)
    np.testing.assert_allclose(g, 3 * x ** 2, rtol=1e-8)
    np.testing.assert_array_equal(x, [0.5, -1.0, 2.0])  # restored
    g2 = ref.numerical_gradient(lambda: np.sum(x ** 3), x, eps=1e-6, indices=[(2,), (0,)])
    np.testing.assert_allclose(g2, [12.0, 0.75], rtol=1e-8)


# ----------------------------------------------------------------------------- the lecture's walk-throughs

LECTURE_X = np.array([[1, 5, 3, 7], [7, 3, 9, 2], [3, 5, 8, 4], [8, 7, 3, 5]], dtype=np.float64).reshape(1, 4, 4, 1)


def test_lecture_max_pooling_walkthrough():
    out, argmax = ref.maxpool2d_forward(LECTURE_X, 2, 2)
    np.testing.assert_array_equal(out[0, :, :, 0], [[7, 9], [8, 8]])
    assert np.mean((out - 1) ** 2) == 49.5
    dout = 2 * (out - 1) / out.size
    dx = ref.maxpool2d_backward(dout, argmax, LECTURE_X.shape, 2, 2)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 3.5, 0], [3.5, 0, 0, 0]])


def test_lecture_average_pooling_walkthrough():
    out = ref.avgpool2d_forward(LECTURE_X, 2, 2)
    np.testing.assert_array_equal(out[0, :, :, 0], [[4, 5.25], [5.75, 5]])
    assert np.mean((out - 1) ** 2) == 16.40625
    dx = ref.avgpool2d_backward(2 * (out - 1) / out.size, LECTURE_X.shape, 2, 2)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.375, 0.375, 0.53125, 0.53125], [0.375, 0.375, 0.53125, 0.53125],
                                                   [0.59375, 0.59375, 0.5, 0.5], [0.59375, 0.59375, 0.5, 0.5]])


# ----------------------------------------------------------------------------- images, merging, global pooling


@pytest.mark.parametrize("shape", [(1, 2, 2, 1), (2, 3, 2, 1), (1, 4, 5, 3), (1, 2, 6, 2)])
def test_sobel_edges_reference(shape):
    rng = np.random.default_rng(30)
    x = rng.standard_normal(shape)
    out = ref.sobel_edges_forward(x)
    # direct definition at one interior-or-edge pixel with explicit reflection
    N, H, W, C = shape
    r = lambda i, n: -i if i < 0 else (2 * n - 2 - i if i >= n else i)  # noqa: E731
    for (n, y, xx, c) in [(0, 0, 0, 0), (0, H - 1, W - 1, C - 1), (N - 1, H // 2, W // 2, 0)]:
        dy = sum(ref.SOBEL_DY[a, b] * x[n, r(y + a - 1, H), r(xx + b - 1, W), c] for a in range(3) for b in range(3))
        dx = sum(ref.SOBEL_DX[a, b] * x[n, r(y + a - 1, H), r(xx + b - 1, W), c] for a in range(3) for b in range(3))
        np.testing.assert_allclose(out[n, y, xx, c], [dy, dx], rtol=1e-12, atol=1e-12)
    G = rng.standard_normal(out.shape)
    if H == 2 and W == 2:  # rows y - 1 and y + 1 (and columns) reflect onto each other: the map is zero
        np.testing.assert_allclose(out, 0.0, atol=1e-12)
        np.testing.assert_allclose(ref.sobel_edges_backward(G), 0.0, atol=1e-12)
        return
    fd_check(lambda: float(np.sum(ref.sobel_edges_forward(x) * G)), [x], [ref.sobel_edges_backward(G)], ["x"])


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 4, 2), (1, 2, 5, 1)])
def test_image_gradient_reference(axis, shape):
    rng = np.random.default_rng(31)
    x = rng.standard_normal(shape)
    out = ref.image_gradient_forward(x, axis)
    if axis == 0:
        assert np.all(out[:, -1] == 0)
    else:
        assert np.all(out[:, :, -1] == 0)
    G = rng.standard_normal(out.shape)
    fd_check(lambda: float(np.sum(ref.image_gradient_forward(x, axis) * G)), [x],
             [ref.image_gradient_backward(G, axis)], ["x"])


def test_merge_and_global_pool_references():
    rng = np.random.default_rng(32)
    a, b, c = (rng.standard_normal((2, 3, 4)) for _ in range(3))
    G = rng.standard_normal((2, 3, 4))
    fd_check(lambda: float(np.sum(ref.multiply_forward([a, b, c]) * G)), [a, b, c],
             ref.multiply_backward(G, [a, b, c]), ["a", "b", "c"])
    fd_check(lambda: float(np.sum(ref.add_forward([a, b]) * G)), [a, b], ref.add_backward(G, 2), ["a", "b"])
    Gc = rng.standard_normal((2, 3, 7))
    d = b[:, :, :3].copy()
    fd_check(lambda: float(np.sum(ref.concatenate_forward([a, d], 2) * Gc)), [a, d],
             ref.concatenate_backward(Gc, [4, 3], 2), ["a", "d"])
    x = rng.permutation(2 * 3 * 4 * 5).reshape(2, 3, 4, 5).astype(np.float64)  # distinct: no ties
    Gp = rng.standard_normal((2, 5))
    fd_check(lambda: float(np.sum(ref.global_avgpool2d_forward(x) * Gp)), [x],
             [ref.global_avgpool2d_backward(Gp, x.shape)], ["x"])
    fd_check(lambda: float(np.sum(ref.global_maxpool2d_forward(x) * Gp)), [x],
             [ref.global_maxpool2d_backward(Gp, x)], ["x"])
