"""The dilated / grouped conv2d and depthwise conv2d kernels (pycnn._core.conv2d_grouped_*,
depthwise_conv2d_*) against the float64 references of tests/reference_conv_grouped.py,
finite differences of those references, and the bindings' validation.

Kernel tests run through the ``isa`` fixture (best SIMD path, AVX2, portable baseline).
Backward is driven by a random upstream gradient G (loss = sum(out * G)).
"""
from __future__ import annotations

import numpy as np
import pytest

import reference as ref
import reference_conv_grouped as rg
from pycnn import _core

FWD = dict(rtol=1e-5, atol=1e-5)
BWD = dict(rtol=1e-4, atol=1e-4)
BWD_BATCH_SUM = dict(BWD, scale_atol=True)  # dweight/dbias are long float32 sums, see ref.assert_close


def gcase(N, H, W, C, KH, KW, F, strides=1, padding="valid", dilation=1, groups=1, note=""):
    sid = f"{N}x{H}x{W}x{C}-k{KH}x{KW}x{F}-s{strides}-d{dilation}-g{groups}-{padding}" + (f"-{note}" if note else "")
    return pytest.param(N, H, W, C, KH, KW, F, strides, padding, dilation, groups, id=sid)


GROUPED = [
    gcase(2, 7, 6, 3, 3, 3, 4, dilation=2, note="dilated"),
    gcase(2, 9, 8, 4, 3, 2, 6, 1, "same", (2, 3), note="rect-dilation-same"),
    gcase(1, 6, 7, 2, 2, 2, 3, 1, "same", 3, note="even-kernel-dilated-same"),
    gcase(2, 7, 6, 4, 3, 3, 6, groups=2, note="groups2"),
    gcase(2, 8, 9, 6, 3, 3, 6, 2, "same", groups=3, note="groups3-stride2"),
    gcase(2, 5, 6, 4, 3, 3, 8, 1, "same", groups=4, note="groups=C"),
    gcase(2, 9, 9, 6, 3, 3, 4, 1, "same", 2, groups=2, note="groups-and-dilation"),
    gcase(1, 1, 1, 4, 1, 1, 6, groups=2, note="1x1-input"),
    gcase(1, 1, 1, 2, 3, 3, 2, 1, "same", 2, groups=2, note="1x1-input-same-dilated"),
    gcase(2, 5, 5, 2, 3, 3, 2, 1, "valid", 2, note="out1x1-dilated"),
    gcase(2, 7, 5, 3, 2, 2, 6, (2, 1), "valid", (1, 2), note="stride-h-dilation-w"),
    gcase(3, 5, 7, 8, 1, 1, 4, 2, "valid", groups=4, note="pointwise-grouped-stride2"),
    gcase(5, 9, 11, 16, 3, 3, 32, 1, "same", 2, groups=4, note="parallel-blocks"),
    gcase(2, 8, 7, 3, 2, 2, 3, 3, "valid", note="strided-rows-read-by-no-window"),
    # an axis with stride > 1 and dilation > 1 (not reachable from Conv2D, as in Keras): the
    # im2col path instead of the phase rewriting
    gcase(2, 9, 9, 4, 3, 3, 4, 2, "same", 2, groups=2, note="im2col-stride-and-dilation"),
    gcase(2, 10, 9, 3, 2, 3, 5, (3, 1), "valid", (2, 1), note="im2col-one-axis"),
    gcase(5, 9, 11, 8, 3, 3, 8, 2, "same", 2, groups=2, note="im2col-parallel-blocks"),
]
GARGS = "N,H,W,C,KH,KW,F,strides,padding,dilation,groups"


def make(rng, N, H, W, C, KH, KW, Cw, F):
    x = rng.uniform(-1, 1, (N, H, W, C)).astype(np.float32)
    w = (rng.standard_normal((KH, KW, Cw, F)) / np.sqrt(KH * KW * Cw)).astype(np.float32)
    b = (rng.standard_normal(F) * 0.1).astype(np.float32)
    return x, w, b


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize(GARGS, GROUPED)
def test_conv2d_grouped_forward_backward(N, H, W, C, KH, KW, F, strides, padding, dilation, groups, activation,
                                         rng):
    x, w, b = make(rng, N, H, W, C, KH, KW, C // groups, F)
    kw = dict(strides=strides, padding=padding, dilation_rate=dilation, groups=groups, activation=activation)
    out = _core.conv2d_grouped_forward(x, w, b, **kw)
    assert out.dtype == np.float32
    ref.assert_close(out, rg.conv2d_grouped_forward(x, w, b, **kw), name="out", **FWD)
    G = rng.standard_normal(out.shape).astype(np.float32)
    got = _core.conv2d_grouped_backward(G, x, w, out, **kw)
    want = rg.conv2d_grouped_backward(G, x, w, out, **kw)
    for g, r, name in zip(got, want, ["dinp", "dweight", "dbias"]):
        assert g.dtype == np.float32 and g.shape == r.shape, name
        ref.assert_close(g, r, name=name, **(BWD if name == "dinp" else BWD_BATCH_SUM))


def test_conv2d_grouped_with_one_group_and_no_dilation_equals_conv2d(rng):
    x, w, b = make(rng, 2, 7, 8, 3, 3, 3, 3, 5)
    a = _core.conv2d_grouped_forward(x, w, b, strides=2, padding="same")
    np.testing.assert_allclose(a, _core.conv2d_forward(x, w, b, strides=2, padding="same"), rtol=1e-5, atol=1e-6)


def test_conv2d_grouped_without_bias_and_without_dinp(rng):
    x, w, _ = make(rng, 2, 6, 7, 4, 3, 3, 2, 4)
    kw = dict(padding="same", dilation_rate=2, groups=2, activation="tanh")
    out = _core.conv2d_grouped_forward(x, w, None, **kw)
    G = rng.standard_normal(out.shape).astype(np.float32)
    _, rdw, _ = rg.conv2d_grouped_backward(G, x, w, out, **kw)
    dinp, dw, db = _core.conv2d_grouped_backward(G, x, w, out, has_bias=False, need_dinp=False, **kw)
    assert dinp is None and db is None
    ref.assert_close(dw, rdw, name="dweight", **BWD_BATCH_SUM)


# ----------------------------------------------------------------------------- depthwise


def dcase(N, H, W, C, KH, KW, M, strides=1, padding="valid", dilation=1, note=""):
    sid = f"{N}x{H}x{W}x{C}-k{KH}x{KW}-m{M}-s{strides}-d{dilation}-{padding}" + (f"-{note}" if note else "")
    return pytest.param(N, H, W, C, KH, KW, M, strides, padding, dilation, id=sid)


DEPTHWISE = [
    dcase(1, 5, 5, 1, 3, 3, 1, note="batch1-C1"),
    dcase(2, 7, 6, 3, 3, 3, 1, 1, "same", note="odd"),
    dcase(2, 8, 9, 5, 3, 3, 2, 2, "same", note="M2-stride2"),
    dcase(2, 6, 7, 4, 4, 2, 3, 1, "same", note="even-kernel-M3"),
    dcase(2, 9, 8, 3, 3, 3, 1, 1, "same", 2, note="dilated-same"),
    dcase(2, 9, 10, 2, 2, 3, 2, 1, "valid", (3, 2), note="rect-dilated-M2"),
    dcase(2, 9, 9, 3, 3, 3, 1, 2, "same", 2, note="stride-and-dilation"),
    dcase(1, 1, 1, 6, 3, 3, 2, 1, "same", note="1x1-input"),
    dcase(2, 5, 4, 3, 5, 4, 1, note="out1x1"),
    dcase(2, 11, 13, 37, 3, 3, 1, (2, 3), "same", note="odd-channels-rect-strides"),
    dcase(4, 12, 12, 64, 3, 3, 1, 1, "same", note="vector-channels-parallel"),
    dcase(3, 10, 9, 24, 5, 5, 2, 1, "same", note="5x5-M2-parallel"),
    # M = 1..4 have their own unrolled loops; M > 4 spreads the pixel over a scratch row
    dcase(2, 7, 8, 5, 3, 3, 4, 1, "same", note="M4"),
    dcase(2, 7, 8, 3, 3, 2, 5, 2, "same", 2, note="M5-generic"),
    dcase(2, 6, 6, 17, 3, 3, 8, 1, "valid", note="M8-generic-odd-C"),
]
DARGS = "N,H,W,C,KH,KW,M,strides,padding,dilation"


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("activation", ["linear", "sigmoid"])
@pytest.mark.parametrize(DARGS, DEPTHWISE)
def test_depthwise_forward_backward(N, H, W, C, KH, KW, M, strides, padding, dilation, activation, rng):
    x, w, _ = make(rng, N, H, W, C, KH, KW, C, M)
    b = (rng.standard_normal(C * M) * 0.1).astype(np.float32)
    kw = dict(strides=strides, padding=padding, dilation_rate=dilation, activation=activation)
    out = _core.depthwise_conv2d_forward(x, w, b, **kw)
    assert out.dtype == np.float32
    ref.assert_close(out, rg.depthwise_conv2d_forward(x, w, b, **kw), name="out", **FWD)
    G = rng.standard_normal(out.shape).astype(np.float32)
    got = _core.depthwise_conv2d_backward(G, x, w, out, **kw)
    want = rg.depthwise_conv2d_backward(G, x, w, out, **kw)
    for g, r, name in zip(got, want, ["dinp", "dweight", "dbias"]):
        assert g.dtype == np.float32 and g.shape == r.shape, name
        ref.assert_close(g, r, name=name, **(BWD if name == "dinp" else BWD_BATCH_SUM))


def test_depthwise_is_grouped_conv_with_groups_equal_channels(rng):
    """Keras's channel order: depthwise output channel c*M + m is grouped-conv filter c*M + m
    of group c, so the (KH, KW, C, M) kernel reshaped to (KH, KW, 1, C*M) gives the same result."""
    N, H, W, C, M = 2, 7, 8, 3, 2
    x, w, b6 = make(rng, N, H, W, C, 3, 3, C, M)
    b = (rng.standard_normal(C * M) * 0.1).astype(np.float32)
    kw = dict(padding="same", dilation_rate=2)
    dw = _core.depthwise_conv2d_forward(x, w, b, **kw)
    gw = _core.conv2d_grouped_forward(x, w.reshape(3, 3, 1, C * M), b, groups=C, **kw)
    np.testing.assert_allclose(dw, gw, rtol=1e-5, atol=1e-6)


def test_depthwise_backward_without_bias_and_dinp(rng):
    x, w, _ = make(rng, 2, 6, 5, 4, 3, 3, 4, 2)
    out = _core.depthwise_conv2d_forward(x, w, None, padding="same")
    G = rng.standard_normal(out.shape).astype(np.float32)
    dinp, dw, db = _core.depthwise_conv2d_backward(G, x, w, has_bias=False, need_dinp=False, padding="same")
    assert dinp is None and db is None
    ref.assert_close(dw, rg.depthwise_conv2d_backward(G, x, w, padding="same")[1], name="dweight", **BWD_BATCH_SUM)


def test_depthwise_and_grouped_serial_equals_parallel(rng):
    import pycnn

    x, w, _ = make(rng, 6, 12, 12, 32, 3, 3, 32, 2)
    xg, wg, bg = make(rng, 6, 10, 10, 8, 3, 3, 4, 8)
    saved = pycnn.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            pycnn.set_num_threads(threads)
            out = _core.depthwise_conv2d_forward(x, w, None, padding="same", activation="relu")
            G = np.cos(np.arange(out.size, dtype=np.float32)).reshape(out.shape)
            d = _core.depthwise_conv2d_backward(G, x, w, out, padding="same", activation="relu")
            og = _core.conv2d_grouped_forward(xg, wg, bg, padding="same", dilation_rate=2, groups=2)
            Gg = np.sin(np.arange(og.size, dtype=np.float32)).reshape(og.shape)
            dg = _core.conv2d_grouped_backward(Gg, xg, wg, padding="same", dilation_rate=2, groups=2)
            results.append((out, *d, og, *dg))
    finally:
        pycnn.set_num_threads(saved)
    # weight gradients are sums of per-thread partials: equal up to float32 summation order
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * (np.abs(a).max() + 1e-12))


# ----------------------------------------------------------------------------- finite differences


EPS, TOL = 1e-6, 1e-6


def _fd_check(loss, arrays, grads, names):
    for arr, grad, name in zip(arrays, grads, names):
        num = ref.numerical_gradient(loss, arr, eps=EPS)
        err = ref.rel_error(num, grad)
        assert err < TOL, f"{name}: finite-difference relative error {err:.3g}"


@pytest.mark.parametrize("strides, padding, dilation, groups", [(1, "same", 2, 2), ((2, 1), "valid", 1, 3),
                                                                (1, "valid", (1, 2), 6)])
def test_reference_grouped_finite_differences(strides, padding, dilation, groups, rng):
    x = rng.standard_normal((2, 6, 5, 6))
    w = rng.standard_normal((3, 2, 6 // groups, 6))
    b = rng.standard_normal(6)
    G = rng.standard_normal(rg.conv2d_grouped_forward(x, w, b, strides, padding, dilation, groups, "tanh").shape)
    loss = lambda: float(np.sum(rg.conv2d_grouped_forward(x, w, b, strides, padding, dilation, groups, "tanh") * G))
    out = rg.conv2d_grouped_forward(x, w, b, strides, padding, dilation, groups, "tanh")
    grads = rg.conv2d_grouped_backward(G, x, w, out, strides, padding, dilation, groups, "tanh")
    _fd_check(loss, [x, w, b], grads, ["dinp", "dweight", "dbias"])


@pytest.mark.parametrize("M, strides, padding, dilation", [(1, 1, "same", 2), (2, 2, "same", 1), (3, 1, "valid", (2, 1))])
def test_reference_depthwise_and_separable_finite_differences(M, strides, padding, dilation, rng):
    x = rng.standard_normal((2, 6, 7, 3))
    w = rng.standard_normal((3, 2, 3, M))
    b = rng.standard_normal(3 * M)
    out = rg.depthwise_conv2d_forward(x, w, b, strides, padding, dilation, "sigmoid")
    G = rng.standard_normal(out.shape)
    loss = lambda: float(np.sum(rg.depthwise_conv2d_forward(x, w, b, strides, padding, dilation, "sigmoid") * G))
    _fd_check(loss, [x, w, b], rg.depthwise_conv2d_backward(G, x, w, out, strides, padding, dilation, "sigmoid"),
              ["dinp", "dweight", "dbias"])
    pw = rng.standard_normal((1, 1, 3 * M, 4))
    pb = rng.standard_normal(4)
    out = rg.separable_conv2d_forward(x, w, pw, pb, strides, padding, dilation, "tanh")
    G = rng.standard_normal(out.shape)
    loss = lambda: float(np.sum(rg.separable_conv2d_forward(x, w, pw, pb, strides, padding, dilation, "tanh") * G))
    _fd_check(loss, [x, w, pw, pb], rg.separable_conv2d_backward(G, x, w, pw, out, strides, padding, dilation, "tanh"),
              ["dinp", "ddepthwise", "dpointwise", "dbias"])


def test_float32_kernels_finite_difference_spot_check(rng):
    """~20 coordinates of each input: the float32 kernels' gradients vs their own finite differences."""
    x, w, b = make(rng, 2, 7, 6, 4, 3, 3, 2, 4)
    xd, wd, _ = make(rng, 2, 7, 6, 3, 3, 3, 3, 2)
    bd = (rng.standard_normal(6) * 0.1).astype(np.float32)
    for fwd, bwd, args, kw in [
            (_core.conv2d_grouped_forward, _core.conv2d_grouped_backward, [x, w, b],
             dict(padding="same", dilation_rate=2, groups=2, activation="tanh")),
            (_core.depthwise_conv2d_forward, _core.depthwise_conv2d_backward, [xd, wd, bd],
             dict(strides=2, padding="same", activation="tanh"))]:
        out = fwd(*args, **kw)
        G = rng.standard_normal(out.shape)
        loss = lambda: float(np.sum(fwd(*args, **kw).astype(np.float64) * G))
        grads = bwd(G, args[0], args[1], out, **kw)
        for arr, grad, name in zip(args, grads, ["dinp", "dweight", "dbias"]):
            idx = ref.random_indices(rng, arr.shape, 20)
            num = ref.numerical_gradient(loss, arr, eps=1e-2, indices=idx)
            ana = np.array([grad[i] for i in idx], dtype=np.float64)
            assert ref.rel_error(num, ana) < 1e-2, (fwd.__name__, name)


# ----------------------------------------------------------------------------- binding validation


def test_bindings_reject_bad_arguments():
    x = np.zeros((2, 6, 6, 4), np.float32)
    with pytest.raises(ValueError, match=r"input channels to be divisible by groups.*groups=3"):
        _core.conv2d_grouped_forward(x, np.zeros((3, 3, 1, 3), np.float32), groups=3)
    with pytest.raises(ValueError, match=r"filters \(weight.shape\[3\]\) to be divisible by groups.*groups=2"):
        _core.conv2d_grouped_forward(x, np.zeros((3, 3, 2, 3), np.float32), groups=2)
    with pytest.raises(ValueError, match=r"weight.shape\[2\] to be 2 .*Received: weight.shape=\(3, 3, 4, 4\)"):
        _core.conv2d_grouped_forward(x, np.zeros((3, 3, 4, 4), np.float32), groups=2)
    with pytest.raises(ValueError, match=r"'groups' to be a positive integer. Received: groups=0"):
        _core.conv2d_grouped_forward(x, np.zeros((3, 3, 4, 4), np.float32), groups=0)
    with pytest.raises(ValueError, match=r"'dilation_rate' to be positive"):
        _core.conv2d_grouped_forward(x, np.zeros((3, 3, 4, 4), np.float32), dilation_rate=0)
    with pytest.raises(ValueError, match=r"output size would be zero or negative.*dilation_rate=\(3, 3\)"):
        _core.conv2d_grouped_forward(x, np.zeros((3, 3, 4, 4), np.float32), dilation_rate=3)
    with pytest.raises(ValueError, match=r"'bias' of shape \(8,\)"):
        _core.depthwise_conv2d_forward(x, np.zeros((3, 3, 4, 2), np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"weight.shape\[2\] to be 4"):
        _core.depthwise_conv2d_forward(x, np.zeros((3, 3, 3, 1), np.float32))
    with pytest.raises(ValueError, match=r"4-D array"):
        _core.depthwise_conv2d_forward(x[0], np.zeros((3, 3, 4, 1), np.float32))
    w = np.zeros((3, 3, 4, 1), np.float32)
    with pytest.raises(ValueError, match=r"'dout' to have the forward output's shape \(2, 4, 4, 4\)"):
        _core.depthwise_conv2d_backward(np.zeros((2, 4, 4, 3), np.float32), x, w)
    with pytest.raises(ValueError, match=r"needs the forward output 'out'"):
        _core.depthwise_conv2d_backward(np.zeros((2, 4, 4, 4), np.float32), x, w, activation="relu")
    with pytest.raises(ValueError, match=r"'dout' to have the forward output's shape"):
        _core.conv2d_grouped_backward(np.zeros((2, 4, 4, 3), np.float32), x, np.zeros((3, 3, 2, 4), np.float32),
                                      groups=2)
