"""pycnn._core softmax and fused softmax + sparse cross-entropy against the float64 reference."""
from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from pycnn import _core

pytestmark = pytest.mark.usefixtures("isa")

FWD = dict(rtol=1e-5, atol=1e-5)
BWD = dict(rtol=1e-4, atol=1e-4)

SHAPES = [(5,), (1, 10), (7, 3), (64, 10), (2, 3, 4), (3, 1000), (4, 1), (33, 17)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_softmax_forward(shape, rng):
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    out = _core.softmax_forward(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    ref.assert_close(out, ref.softmax_forward(x), name="out", **FWD)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_softmax_backward(shape, rng):
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    out = _core.softmax_forward(x)
    G = rng.standard_normal(shape).astype(np.float32)
    dinp = _core.softmax_backward(G, out)
    assert dinp.dtype == np.float32
    ref.assert_close(dinp, ref.softmax_backward(G, out), name="dinp", **BWD)


def test_softmax_seed_examples():
    """The lecture's softmax: [1, 2, 3] and the overflowing naive version's [1000, 1001, 1002]."""
    np.testing.assert_allclose(_core.softmax_forward(np.array([1.0, 2.0, 3.0])),
                               [0.09003057, 0.24472847, 0.66524096], rtol=1e-6)
    big = _core.softmax_forward(np.array([1000.0, 1001.0, 1002.0], dtype=np.float32))
    assert not np.isnan(big).any()
    np.testing.assert_allclose(big, [0.090, 0.245, 0.665], atol=5e-4)
    np.testing.assert_allclose(big, [0.09003057, 0.24472847, 0.66524096], rtol=1e-6)


def test_softmax_extreme_rows():
    x = np.array([[1e30, 0, -1e30], [-1e4, -1e4, -1e4], [88.0, 89.0, -88.0]], dtype=np.float32)
    out = _core.softmax_forward(x)
    assert np.isfinite(out).all()
    ref.assert_close(out, ref.softmax_forward(x), name="out", **FWD)


CE_SHAPES = [(1, 2), (8, 3), (64, 10), (5, 1000), (37, 11)]


@pytest.mark.parametrize("N,K", CE_SHAPES)
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8])
def test_softmax_crossentropy_forward(N, K, label_dtype, rng):
    z = (rng.standard_normal((N, K)) * 3).astype(np.float32)
    labels = rng.integers(0, min(K, 256), N).astype(label_dtype)
    loss, probs = _core.softmax_crossentropy_forward(z, labels)
    rloss, rprobs = ref.softmax_crossentropy_forward(z, labels)
    assert isinstance(loss, float)
    assert loss == pytest.approx(rloss, rel=1e-5, abs=1e-5)
    assert probs.dtype == np.float32
    ref.assert_close(probs, rprobs, name="probs", **FWD)


@pytest.mark.parametrize("N,K", CE_SHAPES)
@pytest.mark.parametrize("scale", [None, 1.0, 0.37])
def test_softmax_crossentropy_backward(N, K, scale, rng):
    z = (rng.standard_normal((N, K)) * 3).astype(np.float32)
    labels = rng.integers(0, K, N)
    _, probs = _core.softmax_crossentropy_forward(z, labels)
    dlogits = _core.softmax_crossentropy_backward(probs, labels, scale)
    assert dlogits.dtype == np.float32
    ref.assert_close(dlogits, ref.softmax_crossentropy_backward(probs, labels, scale), name="dlogits", **BWD)


def test_softmax_crossentropy_large_logits_stay_finite():
    """loss = logsumexp - logit: a probability that rounds to 0 in float32 must not give inf."""
    z = np.array([[1000.0, 0.0], [0.0, 200.0], [-50.0, 50.0]], dtype=np.float32)
    labels = np.array([1, 0, 0])
    loss, probs = _core.softmax_crossentropy_forward(z, labels)
    assert np.isfinite(loss) and np.isfinite(probs).all()
    assert loss == pytest.approx((1000.0 + 200.0 + 100.0) / 3, rel=1e-6)


@pytest.mark.parametrize("offset", [1e3, 1e4])
def test_softmax_crossentropy_is_shift_invariant(offset, rng):
    """Adding a constant to every logit changes neither probs nor loss. Float32 represents z + offset
    exactly here (integer-valued logits), so the loss must keep the forward tolerance: computing it as
    (max - z[y]) + log(sum exp(z - max)) does; rounding max + log(sum) to float32 first does not."""
    z = rng.integers(-4, 5, (16, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 16)
    rloss, rprobs = ref.softmax_crossentropy_forward(z, labels)
    loss, probs = _core.softmax_crossentropy_forward(z + np.float32(offset), labels)
    ref.assert_close(probs, rprobs, name="probs", **FWD)
    assert loss == pytest.approx(rloss, rel=1e-5, abs=1e-5)


def test_softmax_crossentropy_example_by_hand():
    z = np.array([[1.0, 2.0, 3.0], [1000.0, 1001.0, 1002.0]], dtype=np.float32)
    loss, probs = _core.softmax_crossentropy_forward(z, np.array([2, 0]))
    np.testing.assert_allclose(probs, [[0.09003057, 0.24472847, 0.66524096]] * 2, rtol=1e-6)
    assert loss == pytest.approx((-np.log(0.66524096) - np.log(0.09003057)) / 2, rel=1e-5)
    d = _core.softmax_crossentropy_backward(probs, np.array([2, 0]))
    np.testing.assert_allclose(d, np.array([[0.09003057, 0.24472847, -0.33475904],
                                            [-0.90996943, 0.24472847, 0.66524096]]) / 2, rtol=1e-5, atol=1e-7)


def test_softmax_float32_finite_difference_spot_check(rng):
    x = rng.standard_normal((6, 7)).astype(np.float32)
    G = rng.standard_normal(x.shape)
    idx = ref.random_indices(rng, x.shape, 20)
    dinp = _core.softmax_backward(G, _core.softmax_forward(x))
    num = ref.numerical_gradient(lambda: np.sum(_core.softmax_forward(x).astype(np.float64) * G), x, 1e-2, idx)
    assert ref.rel_error(num, [dinp[i] for i in idx]) < 1e-2


def test_softmax_crossentropy_float32_finite_difference_spot_check(rng):
    z = (rng.standard_normal((6, 5)) * 2).astype(np.float32)
    labels = rng.integers(0, 5, 6)
    idx = ref.random_indices(rng, z.shape, 20)
    _, probs = _core.softmax_crossentropy_forward(z, labels)
    dlogits = _core.softmax_crossentropy_backward(probs, labels)
    num = ref.numerical_gradient(lambda: _core.softmax_crossentropy_forward(z, labels)[0], z, 1e-2, idx)
    assert ref.rel_error(num, [dlogits[i] for i in idx]) < 1e-2
