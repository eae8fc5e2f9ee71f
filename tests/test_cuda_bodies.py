"""The CUDA kernels' arithmetic, checked on the CPU.

csrc/cuda/bodies.h holds the per-element body of every CUDA kernel (one thread per output
element on the GPU). The test-only bindings ``pycnn._core._bodies_*`` loop the same bodies
over all outputs on the host, so these tests run everywhere (no GPU, no CUDA build) and
check the formulas the GPU runs against the float64 reference (tests/reference.py) and the
CPU kernels. They do not check launch, memory or synchronisation: those need a device
(tests for pycnn._cuda itself skip without one).
"""
from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from pycnn import _core

FWD = dict(rtol=1e-5, atol=1e-5)
BWD = dict(rtol=1e-4, atol=1e-4)

CONV_CASES = [  # N, H, W, C, F, KH, KW, strides, padding
    pytest.param(1, 5, 5, 1, 1, 3, 3, (1, 1), "valid", id="batch1-C1"),
    pytest.param(2, 7, 6, 3, 4, 3, 3, (1, 1), "same", id="same-odd-kernel"),
    pytest.param(2, 6, 7, 3, 2, 2, 4, (1, 1), "same", id="same-even-kernel"),
    pytest.param(2, 9, 8, 2, 3, 3, 2, (2, 3), "valid", id="stride!=kernel"),
    pytest.param(3, 8, 9, 3, 5, 3, 3, (2, 2), "same", id="stride2-same"),
    pytest.param(2, 4, 5, 3, 2, 4, 5, (1, 1), "valid", id="out1x1"),
    pytest.param(2, 12, 12, 6, 16, 5, 5, (1, 1), "valid", id="lenet-conv2"),
]


@pytest.mark.parametrize("N,H,W,C,F,KH,KW,strides,padding", CONV_CASES)
@pytest.mark.parametrize("activation", ["linear", "relu", "tanh"])
def test_conv2d_bodies(N, H, W, C, F, KH, KW, strides, padding, activation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    w = rng.standard_normal((KH, KW, C, F)).astype(np.float32) * 0.3
    b = rng.standard_normal(F).astype(np.float32)
    out = _core._bodies_conv2d_forward(x, w, b, strides=strides, padding=padding, activation=activation)
    np.testing.assert_allclose(out, ref.conv2d_forward(x, w, b, strides, padding, activation), **FWD)
    np.testing.assert_allclose(out, _core.conv2d_forward(x, w, b, strides, padding, activation), **FWD)

    G = rng.standard_normal(out.shape).astype(np.float32)  # random upstream gradient
    got = _core._bodies_conv2d_backward(G, x, w, out, strides=strides, padding=padding, activation=activation)
    want = ref.conv2d_backward(G, x, w, out, strides, padding, activation)
    cpu = _core.conv2d_backward(G, x, w, out, strides=strides, padding=padding, activation=activation)
    for name, g, r, c in zip(("dinp", "dweight", "dbias"), got, want, cpu):
        np.testing.assert_allclose(g, r, **BWD, err_msg=name)
        np.testing.assert_allclose(g, c, **BWD, err_msg=name)


def test_conv2d_bodies_without_bias():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(_core._bodies_conv2d_forward(x, w, None, padding="same"),
                               ref.conv2d_forward(x, w, None, (1, 1), "same"), **FWD)


POOL_CASES = [  # N, H, W, C, pool, strides, padding
    pytest.param(1, 4, 4, 1, 2, None, "valid", id="batch1-C1"),
    pytest.param(3, 7, 5, 3, 2, None, "valid", id="non-tiling-odd"),
    pytest.param(2, 6, 7, 3, 3, 1, "valid", id="overlapping"),
    pytest.param(2, 9, 8, 2, (3, 2), (2, 3), "valid", id="rect-stride!=pool"),
    pytest.param(2, 5, 4, 3, (5, 4), None, "valid", id="out1x1"),
    pytest.param(2, 5, 5, 3, 2, 2, "same", id="asym-pad"),
    pytest.param(2, 7, 6, 3, 3, 2, "same", id="odd-window"),
    pytest.param(2, 6, 7, 2, (2, 4), 1, "same", id="even-window-overlap"),
    pytest.param(1, 3, 3, 2, 4, 1, "same", id="window-larger-than-input"),
]


def distinct(shape, seed):
    """Distinct values (no ties), many negative so a padded zero would win if allowed to."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2 + rng.uniform(0, 0.5, shape)).astype(np.float32)


@pytest.mark.parametrize("N,H,W,C,pool,strides,padding", POOL_CASES)
def test_maxpool2d_bodies(N, H, W, C, pool, strides, padding):
    x = distinct((N, H, W, C), 2)
    out, argmax = _core._bodies_maxpool2d_forward(x, pool, strides, padding)
    rout, rargmax = ref.maxpool2d_forward(x, pool, strides, padding)
    cout, cargmax = _core.maxpool2d_forward(x, pool, strides, padding)
    np.testing.assert_allclose(out, rout, **FWD)
    assert argmax.dtype == np.int32
    np.testing.assert_array_equal(argmax, cargmax)
    np.testing.assert_array_equal(argmax, rargmax)
    G = np.random.default_rng(3).standard_normal(out.shape).astype(np.float32)
    dinp = _core._bodies_maxpool2d_backward(G, argmax, x.shape, pool, strides, padding)
    np.testing.assert_allclose(dinp, ref.maxpool2d_backward(G, rargmax, x.shape, pool, strides, padding), **BWD)
    # The gather adds in the CPU scatter's order: bit-identical.
    np.testing.assert_array_equal(dinp, _core.maxpool2d_backward(G, cargmax, x.shape, pool, strides, padding))


def test_maxpool2d_bodies_ties_go_to_the_first_maximum():
    x = np.zeros((1, 4, 4, 2), np.float32)  # every window is a tie
    _, argmax = _core._bodies_maxpool2d_forward(x, 2)
    np.testing.assert_array_equal(argmax, _core.maxpool2d_forward(x, 2)[1])
    assert argmax[0, 0, 0, 0] == 0 and argmax[0, 1, 1, 1] == (2 * 4 + 2) * 2 + 1


def test_maxpool2d_bodies_nan_wins_like_the_cpu():
    x = distinct((1, 4, 4, 1), 4)
    x[0, 1, 0, 0] = np.nan
    out, argmax = _core._bodies_maxpool2d_forward(x, 2)
    cout, cargmax = _core.maxpool2d_forward(x, 2)
    np.testing.assert_array_equal(argmax, cargmax)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(cout))


@pytest.mark.parametrize("N,H,W,C,pool,strides,padding", POOL_CASES)
def test_avgpool2d_bodies(N, H, W, C, pool, strides, padding):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    out = _core._bodies_avgpool2d_forward(x, pool, strides, padding)
    np.testing.assert_allclose(out, ref.avgpool2d_forward(x, pool, strides, padding), **FWD)
    np.testing.assert_allclose(out, _core.avgpool2d_forward(x, pool, strides, padding), **FWD)
    G = rng.standard_normal(out.shape).astype(np.float32)
    dinp = _core._bodies_avgpool2d_backward(G, x.shape, pool, strides, padding)
    np.testing.assert_allclose(dinp, ref.avgpool2d_backward(G, x.shape, pool, strides, padding), **BWD)
    np.testing.assert_allclose(dinp, _core.avgpool2d_backward(G, x.shape, pool, strides, padding), **BWD)


@pytest.mark.parametrize("N,K", [(1, 1), (1, 10), (7, 3), (64, 10)])
def test_softmax_crossentropy_bodies(N, K):
    rng = np.random.default_rng(6)
    logits = (rng.standard_normal((N, K)) * 4).astype(np.float32)
    labels = rng.integers(0, K, N)
    loss, probs = _core._bodies_softmax_crossentropy_forward(logits, labels)
    rloss, rprobs = ref.softmax_crossentropy_forward(logits, labels)
    closs, _ = _core.softmax_crossentropy_forward(logits, labels)
    assert loss == pytest.approx(rloss, rel=1e-5, abs=1e-5)
    assert loss == pytest.approx(closs, rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(probs, rprobs, **FWD)
    for scale in (None, 0.25):
        d = _core._bodies_softmax_crossentropy_backward(probs, labels, scale)
        np.testing.assert_allclose(d, ref.softmax_crossentropy_backward(probs, labels, scale), **FWD)
        np.testing.assert_allclose(d, _core.softmax_crossentropy_backward(probs, labels, scale), **FWD)


def test_softmax_crossentropy_bodies_large_logits_stay_finite():
    logits = np.array([[1000.0, 0.0, -1000.0], [-5e4, 5e4, 0.0]], np.float32)
    labels = np.array([2, 0])
    loss, probs = _core._bodies_softmax_crossentropy_forward(logits, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(probs))
    assert loss == pytest.approx(ref.softmax_crossentropy_forward(logits, labels)[0], rel=1e-6)


@pytest.mark.parametrize("N,IN,OUT", [(1, 1, 1), (3, 7, 5), (64, 400, 120), (5, 84, 10)])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
def test_dense_bodies(N, IN, OUT, activation):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, IN)).astype(np.float32)
    w = (rng.standard_normal((IN, OUT)) / np.sqrt(IN)).astype(np.float32)
    b = rng.standard_normal(OUT).astype(np.float32)
    out = _core._bodies_dense_forward(x, w, b, activation)
    np.testing.assert_allclose(out, ref.dense_forward(x, w, b, activation), **FWD)
    np.testing.assert_allclose(out, _core.dense_forward(x, w, b, activation), **FWD)
    G = rng.standard_normal(out.shape).astype(np.float32)
    got = _core._bodies_dense_backward(G, x, w, out, activation)
    want = ref.dense_backward(G, x, w, out, activation)
    cpu = _core.dense_backward(G, x, w, out, activation)
    for name, g, r, c in zip(("dinp", "dweight", "dbias"), got, want, cpu):
        np.testing.assert_allclose(g, r, **BWD, err_msg=name)
        np.testing.assert_allclose(g, c, **BWD, err_msg=name)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "linear"])
def test_activation_bodies(activation):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 5, 3)).astype(np.float32) * 3
    x[np.abs(x) < 1e-3] = 0.5  # away from relu's kink
    y = _core._bodies_activation_forward(x, activation)
    np.testing.assert_allclose(y, ref.activate(x, activation), **FWD)
    G = rng.standard_normal(x.shape).astype(np.float32)
    d = _core._bodies_activation_backward(G, y, activation)
    np.testing.assert_allclose(d, G * ref.activation_grad(y, activation), **FWD)
    if activation != "linear":
        cpu = getattr(_core, f"{activation}_backward")(G, y)
        np.testing.assert_allclose(d, cpu, **FWD)
        np.testing.assert_allclose(y, getattr(_core, f"{activation}_forward")(x), **FWD)


def test_bodies_validate_like_the_single_ops():
    x = np.zeros((1, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"_bodies_conv2d_forward\(\) expected weight.shape\[2\]"):
        _core._bodies_conv2d_forward(x, np.zeros((3, 3, 2, 4), np.float32))
    with pytest.raises(ValueError, match="computed output size would be zero or negative"):
        _core._bodies_maxpool2d_forward(x, 5)
    with pytest.raises(ValueError, match="class indices in"):
        _core._bodies_softmax_crossentropy_forward(np.zeros((2, 3), np.float32), np.array([0, 3]))
    with pytest.raises(ValueError, match="forward output's shape"):
        _core._bodies_dense_backward(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32),
                                     np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="int32 array"):
        _core._bodies_maxpool2d_backward(np.zeros((1, 2, 2, 3), np.float32), np.zeros((1, 2, 2, 3)), x.shape, 2)
