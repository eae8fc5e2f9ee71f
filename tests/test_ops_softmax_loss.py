"""Softmax (the activation op with activation='softmax') and the fused loss component
'sparse_softmax_crossentropy' (pycnn.ops.loss) against the float64 oracle."""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from op_harness import BWD, FWD, check_backward, check_forward, check_spot_fd, f32
from pycnn import ops

pytestmark = pytest.mark.usefixtures("isa")

SOFTMAX = {"activation": "softmax"}
CE = "sparse_softmax_crossentropy"

SHAPES = [(1, 5), (1, 10), (7, 3), (64, 10), (2, 3, 4), (3, 1000), (4, 1), (33, 17), (2, 3, 4, 6)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_softmax_forward(shape, rng):
    x = f32(rng.standard_normal(shape) * 4)
    out, _, _ = check_forward("activation", [x], [], SOFTMAX)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_softmax_backward(shape, rng):
    x = f32(rng.standard_normal(shape) * 2)
    check_backward("activation", [x], [], SOFTMAX, rng)


def test_softmax_seed_examples():
    """The lecture's softmax: [1, 2, 3] and the overflowing naive version's [1000, 1001, 1002]."""
    small = ops.run("activation", [np.array([[1.0, 2.0, 3.0]])], attrs=SOFTMAX)
    np.testing.assert_allclose(small[0], [0.09003057, 0.24472847, 0.66524096], rtol=1e-6)
    big = ops.run("activation", [np.array([[1000.0, 1001.0, 1002.0]], dtype=np.float32)], attrs=SOFTMAX)
    assert not np.isnan(big).any()
    np.testing.assert_allclose(big[0], [0.090, 0.245, 0.665], atol=5e-4)
    np.testing.assert_allclose(big[0], [0.09003057, 0.24472847, 0.66524096], rtol=1e-6)


def test_softmax_extreme_rows():
    x = np.array([[1e30, 0, -1e30], [-1e4, -1e4, -1e4], [88.0, 89.0, -88.0]], dtype=np.float32)
    out = ops.run("activation", [x], attrs=SOFTMAX)
    assert np.isfinite(out).all()
    oracle.assert_close(out, oracle.softmax_forward(x), name="out", **FWD)


def test_softmax_float32_finite_difference_spot_check(rng):
    check_spot_fd("activation", [f32(rng.standard_normal((6, 7)))], [], SOFTMAX, rng)


# ----------------------------------------------------------------------------- the loss

CE_SHAPES = [(1, 2), (8, 3), (64, 10), (5, 1000), (37, 11), (3, 1)]


def check_loss(z, labels, sample_weight=None, need_grad=True):
    loss, hits, dlogits = ops.loss(CE, z, labels, sample_weight, need_grad)
    rloss, rhits, rdlogits = oracle.sparse_softmax_crossentropy(z, labels, sample_weight)
    assert isinstance(loss, float) and isinstance(hits, int)
    assert loss == pytest.approx(rloss, rel=1e-5, abs=1e-5)
    assert hits == rhits
    if not need_grad:
        assert dlogits is None
        return
    assert dlogits.dtype == np.float32
    oracle.assert_close(dlogits, rdlogits, name="dlogits", **BWD)


@pytest.mark.parametrize("N,K", CE_SHAPES)
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8, np.int8, np.uint64])
def test_loss_value_hits_and_gradient(N, K, label_dtype, rng):
    z = f32(rng.standard_normal((N, K)) * 3)
    labels = rng.integers(0, min(K, 100), N).astype(label_dtype)
    check_loss(z, labels)
    check_loss(z, labels, need_grad=False)


@pytest.mark.parametrize("N,K", CE_SHAPES)
def test_loss_with_sample_weights(N, K, rng):
    """loss = sum_r w_r loss_r / N and dlogits_r scaled by w_r / N; zero weights are allowed."""
    z = f32(rng.standard_normal((N, K)) * 3)
    labels = rng.integers(0, K, N)
    w = f32(rng.uniform(0, 2, N))
    w[::3] = 0.0
    check_loss(z, labels, w)
    check_loss(z, labels, np.ones(N, np.float32))
    loss_ones = ops.loss(CE, z, labels, np.ones(N, np.float32))
    loss_none = ops.loss(CE, z, labels)
    assert loss_ones[:2] == loss_none[:2]
    np.testing.assert_array_equal(loss_ones[2], loss_none[2])


def test_hits_count_the_first_maximum():
    z = np.array([[2.0, 2.0, 0.0], [0.0, 5.0, 5.0], [1.0, 0.0, 3.0]], np.float32)
    assert ops.loss(CE, z, np.array([0, 1, 2]))[1] == 3  # ties: the first maximum is the prediction
    assert ops.loss(CE, z, np.array([1, 2, 0]))[1] == 0


def test_loss_of_large_logits_stays_finite():
    """loss = logsumexp - logit: a probability that rounds to 0 in float32 must not give inf."""
    z = np.array([[1000.0, 0.0], [0.0, 200.0], [-50.0, 50.0]], dtype=np.float32)
    loss, hits, d = ops.loss(CE, z, np.array([1, 0, 0]))
    assert np.isfinite(loss) and np.isfinite(d).all() and hits == 0
    assert loss == pytest.approx((1000.0 + 200.0 + 100.0) / 3, rel=1e-6)


@pytest.mark.parametrize("offset", [1e3, 1e4])
def test_loss_is_shift_invariant(offset, rng):
    """Adding a constant to every logit changes neither the gradient nor the loss. Float32
    represents z + offset exactly here (integer-valued logits), so the loss must keep the
    forward tolerance: computing it as (max - z[y]) + log(sum exp(z - max)) does; rounding
    max + log(sum) to float32 first does not."""
    z = f32(rng.integers(-4, 5, (16, 10)))
    labels = rng.integers(0, 10, 16)
    rloss, rhits, rd = oracle.sparse_softmax_crossentropy(z, labels)
    loss, hits, d = ops.loss(CE, z + np.float32(offset), labels)
    oracle.assert_close(d, rd, name="dlogits", **FWD)
    assert loss == pytest.approx(rloss, rel=1e-5, abs=1e-5)


def test_loss_example_by_hand():
    z = np.array([[1.0, 2.0, 3.0], [1000.0, 1001.0, 1002.0]], dtype=np.float32)
    loss, hits, d = ops.loss(CE, z, np.array([2, 0]))
    assert loss == pytest.approx((-np.log(0.66524096) - np.log(0.09003057)) / 2, rel=1e-5)
    assert hits == 1
    np.testing.assert_allclose(d, np.array([[0.09003057, 0.24472847, -0.33475904],
                                            [-0.90996943, 0.24472847, 0.66524096]]) / 2, rtol=1e-5, atol=1e-7)


def test_loss_accepts_array_likes_and_converts_logits(rng):
    z = rng.standard_normal((4, 3))  # float64
    labels = [0, 2, 1, 2]
    loss, hits, d = ops.loss(CE, z.tolist(), labels)
    want = ops.loss(CE, f32(z), np.array(labels))
    assert (loss, hits) == want[:2]
    np.testing.assert_array_equal(d, want[2])


def test_loss_float32_finite_difference_spot_check(rng):
    z = f32(rng.standard_normal((6, 5)) * 2)
    labels = rng.integers(0, 5, 6)
    w = f32(rng.uniform(0.5, 2, 6))
    idx = oracle.random_indices(rng, z.shape, 20)
    for weights in (None, w):
        _, _, d = ops.loss(CE, z, labels, weights)
        num = oracle.numerical_gradient(lambda: ops.loss(CE, z, labels, weights, need_grad=False)[0], z, 1e-2, idx)
        assert oracle.rel_error(num, [d[i] for i in idx]) < 1e-2
