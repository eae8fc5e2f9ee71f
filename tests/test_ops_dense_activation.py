"""pycnn._core dense_forward / dense_backward and the element-wise activations vs the float64 reference."""
from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from pycnn import _core

pytestmark = pytest.mark.usefixtures("isa")

FWD = dict(rtol=1e-5, atol=1e-5)
BWD = dict(rtol=1e-4, atol=1e-4)
# dweight and dbias are float32 sums over the batch; atol scaled by RMS, see ref.assert_close.
BWD_BATCH_SUM = dict(BWD, scale_atol=True)

DENSE_SHAPES = [
    pytest.param(1, 1, 1, id="1x1x1"),
    pytest.param(1, 5, 3, id="batch1"),
    pytest.param(7, 13, 9, id="odd"),
    pytest.param(64, 576, 120, id="lenet-fc1"),
    pytest.param(64, 120, 84, id="lenet-fc2"),
    pytest.param(64, 84, 10, id="lenet-fc3"),
    pytest.param(33, 257, 129, id="odd-blocked"),
    pytest.param(256, 700, 300, id="large"),
    pytest.param(8, 300, 4100, id="out>4096-gemm-NC-panel"),
]


def make_dense(rng, N, IN, OUT):
    x = rng.uniform(-1, 1, (N, IN)).astype(np.float32)
    w = (rng.standard_normal((IN, OUT)) / np.sqrt(IN)).astype(np.float32)
    b = (rng.standard_normal(OUT) * 0.1).astype(np.float32)
    return x, w, b


@pytest.mark.parametrize("N,IN,OUT", DENSE_SHAPES)
def test_dense_forward(N, IN, OUT, rng):
    x, w, b = make_dense(rng, N, IN, OUT)
    out = _core.dense_forward(x, w, b)
    assert out.dtype == np.float32
    ref.assert_close(out, ref.dense_forward(x, w, b), name="out", **FWD)
    ref.assert_close(_core.dense_forward(x, w), ref.dense_forward(x, w), name="out(no bias)", **FWD)


@pytest.mark.parametrize("N,IN,OUT", DENSE_SHAPES)
def test_dense_backward(N, IN, OUT, rng):
    x, w, b = make_dense(rng, N, IN, OUT)
    G = rng.standard_normal((N, OUT)).astype(np.float32)
    dinp, dweight, dbias = _core.dense_backward(G, x, w)
    rdinp, rdweight, rdbias = ref.dense_backward(G, x, w)
    ref.assert_close(dinp, rdinp, name="dinp", **BWD)
    ref.assert_close(dweight, rdweight, name="dweight", **BWD_BATCH_SUM)
    ref.assert_close(dbias, rdbias, name="dbias", **BWD_BATCH_SUM)


@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
@pytest.mark.parametrize("N,IN,OUT", [pytest.param(5, 7, 6, id="small"), pytest.param(64, 576, 120, id="lenet-fc1")])
def test_dense_fused_activation(N, IN, OUT, activation, rng):
    x, w, b = make_dense(rng, N, IN, OUT)
    out = _core.dense_forward(x, w, b, activation)
    ref.assert_close(out, ref.dense_forward(x, w, b, activation), name="out", **FWD)
    G = rng.standard_normal(out.shape).astype(np.float32)
    got = _core.dense_backward(G, x, w, out, activation)
    want = ref.dense_backward(G, x, w, out, activation)  # same cached output on both sides
    for g, r, name in zip(got, want, ["dinp", "dweight", "dbias"]):
        ref.assert_close(g, r, name=name, **(BWD if name == "dinp" else BWD_BATCH_SUM))


def test_dense_without_bias_and_without_dinp(rng):
    x, w, _ = make_dense(rng, 9, 30, 17)
    out = _core.dense_forward(x, w, None, "tanh")
    G = rng.standard_normal(out.shape).astype(np.float32)
    rdinp, rdweight, rdbias = ref.dense_backward(G, x, w, out, "tanh")
    for has_bias, need_dinp in [(False, True), (True, False), (False, False)]:
        dinp, dweight, dbias = _core.dense_backward(G, x, w, out, "tanh", has_bias=has_bias, need_dinp=need_dinp)
        flags = f"(has_bias={has_bias}, need_dinp={need_dinp})"
        assert (dinp is None) == (not need_dinp), flags
        assert (dbias is None) == (not has_bias), flags
        ref.assert_close(dweight, rdweight, name="dweight" + flags, **BWD_BATCH_SUM)
        if need_dinp:
            ref.assert_close(dinp, rdinp, name="dinp" + flags, **BWD)
        if has_bias:
            ref.assert_close(dbias, rdbias, name="dbias" + flags, **BWD_BATCH_SUM)


@pytest.mark.parametrize("activation", ["linear", "sigmoid", "tanh"])
def test_dense_float32_finite_difference_spot_check(activation, rng):
    x, w, b = make_dense(rng, 6, 11, 7)
    out = _core.dense_forward(x, w, b, activation)
    G = rng.standard_normal(out.shape)

    def loss():
        return np.sum(_core.dense_forward(x, w, b, activation).astype(np.float64) * G)

    grads = _core.dense_backward(G, x, w, out, activation)
    for arr, grad, name in zip([x, w, b], grads, ["dinp", "dweight", "dbias"]):
        idx = ref.random_indices(rng, arr.shape, 20)
        num = ref.numerical_gradient(loss, arr, eps=1e-2, indices=idx)
        assert ref.rel_error(num, [grad[i] for i in idx]) < 1e-2, name


# ----------------------------------------------------------------------------- activations

ACT_SHAPES = [(1,), (1000,), (3, 4, 5), (2, 3, 4, 5), (64, 32, 32, 6)]


@pytest.mark.parametrize("shape", ACT_SHAPES, ids=str)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activation_forward_backward(name, shape, rng):
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    forward, backward = getattr(_core, f"{name}_forward"), getattr(_core, f"{name}_backward")
    out = forward(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    ref.assert_close(out, getattr(ref, f"{name}_forward")(x), name="out", **FWD)
    G = rng.standard_normal(shape).astype(np.float32)
    dinp = backward(G, out)
    assert dinp.dtype == np.float32 and dinp.shape == x.shape
    ref.assert_close(dinp, getattr(ref, f"{name}_backward")(G, out), name="dinp", **BWD)


def test_activation_extremes():
    x = np.array([-1e4, -100.0, -20.0, -1e-30, 0.0, 1e-30, 20.0, 100.0, 1e4], dtype=np.float32)
    for name in ["relu", "sigmoid", "tanh"]:
        out = getattr(_core, f"{name}_forward")(x)
        assert np.isfinite(out).all(), name
        ref.assert_close(out, getattr(ref, f"{name}_forward")(x), name=name, **FWD)
    np.testing.assert_array_equal(_core.relu_forward(x)[:5], 0.0)
    np.testing.assert_array_equal(_core.relu_backward(np.ones(3), np.array([0.0, 0.0, 2.0])), [0.0, 0.0, 1.0])


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu"])
def test_activation_float32_finite_difference_spot_check(name, rng):
    x = rng.uniform(-3, 3, (4, 9)).astype(np.float32)
    x[np.abs(x) < 0.05] = 0.5  # a 1e-2 step must not cross the ReLU kink
    forward, backward = getattr(_core, f"{name}_forward"), getattr(_core, f"{name}_backward")
    G = rng.standard_normal(x.shape)
    idx = ref.random_indices(rng, x.shape, 20)
    dinp = backward(G, forward(x))
    num = ref.numerical_gradient(lambda: np.sum(forward(x).astype(np.float64) * G), x, 1e-2, idx)
    assert ref.rel_error(num, [dinp[i] for i in idx]) < 1e-2
