"""Losses (values, gradients, label checks) and optimizers (one and two hand-computed steps)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pycnn import losses, optimizers, utils


def softmax64(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numeric_gradient(f, x, eps=1e-3):
    """Central differences of a scalar f at float64 x (f converts to float32 internally)."""
    grad = np.zeros_like(x, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        grad[idx] = (f(xp) - f(xm)) / (2 * eps)
    return grad


# --------------------------------------------------------------------------- losses

def test_mean_squared_error():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    mse = losses.MeanSquaredError()
    assert mse(y_true, y_pred) == pytest.approx(np.mean((y_pred - y_true) ** 2), rel=1e-6)
    g = mse.gradient(y_true, y_pred)
    assert g.dtype == np.float32 and g.shape == y_pred.shape
    np.testing.assert_allclose(g, 2 * (y_pred - y_true) / y_pred.size, rtol=1e-5, atol=1e-7)
    assert mse(y_true.reshape(2, 12), y_pred.reshape(2, 3, 4)) == pytest.approx(mse(y_true, y_pred))
    with pytest.raises(ValueError, match=r"MeanSquaredError expected y_true with the predictions' shape \(2, 3, 4\)\. "
                                         r"Received: y_true.shape=\(2, 5\)\."):
        mse(np.zeros((2, 5)), y_pred)


def test_sparse_categorical_crossentropy_on_probabilities():
    rng = np.random.default_rng(1)
    probs = softmax64(rng.standard_normal((5, 4)))
    labels = np.array([0, 3, 1, 1, 2])
    loss = losses.SparseCategoricalCrossentropy()
    assert loss(labels, probs) == pytest.approx(-np.mean(np.log(probs[np.arange(5), labels])), rel=1e-6)
    assert loss(labels.reshape(5, 1), probs) == pytest.approx(loss(labels, probs))  # CIFAR-10's (N, 1) labels
    assert loss(labels.astype(np.float64), probs) == pytest.approx(loss(labels, probs))
    g = loss.gradient(labels, probs)
    num = numeric_gradient(lambda p: loss(labels, p), probs)
    np.testing.assert_allclose(g, num, rtol=1e-2, atol=1e-3)
    # a zero probability for the true class is clipped to 1e-7, as in Keras
    hard = np.array([[0.0, 1.0]])
    assert loss([0], hard) == pytest.approx(-math.log(1e-7), rel=1e-4)


def test_sparse_categorical_crossentropy_from_logits_and_spatial_outputs():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((2, 3, 3, 5)) * 3
    labels = rng.integers(0, 5, (2, 3, 3))
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    p = softmax64(logits)
    expected = -np.mean(np.log(np.take_along_axis(p, labels[..., None], axis=-1)))
    assert loss(labels, logits) == pytest.approx(expected, rel=1e-5)
    onehot = np.eye(5)[labels]
    np.testing.assert_allclose(loss.gradient(labels, logits), (p - onehot) / 18, rtol=1e-4, atol=1e-7)
    value, grad = loss.logits_value_and_gradient(labels, logits)
    assert value == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(grad, (p - onehot) / 18, rtol=1e-4, atol=1e-7)
    huge = np.array([[1000.0, 1001.0, 1002.0]])
    assert np.isfinite(loss([2], huge)) and loss([2], huge) == pytest.approx(-np.log(0.66524096), rel=1e-5)


def test_categorical_crossentropy_matches_sparse_and_handles_soft_targets():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    onehot = utils.to_categorical(labels, 4)
    probs = softmax64(logits)
    sparse, dense = losses.SparseCategoricalCrossentropy(), losses.CategoricalCrossentropy()
    assert dense(onehot, probs) == pytest.approx(sparse(labels, probs), rel=1e-6)
    np.testing.assert_allclose(dense.gradient(onehot, probs), sparse.gradient(labels, probs), rtol=1e-5, atol=1e-7)
    soft = softmax64(rng.standard_normal((6, 4)))
    from_logits = losses.CategoricalCrossentropy(from_logits=True)
    expected = -np.mean(np.sum(soft * np.log(probs), axis=1))
    assert from_logits(soft, logits) == pytest.approx(expected, rel=1e-5)
    num = numeric_gradient(lambda z: from_logits(soft, z), logits)
    np.testing.assert_allclose(from_logits.gradient(soft, logits), num, rtol=1e-2, atol=1e-4)
    assert dense(soft, probs) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(dense.gradient(soft, probs), numeric_gradient(lambda p: dense(soft, p), probs),
                               rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("labels, match", [
    (np.array([0, 1, 4]), r"expected class labels in \[0, 4\) for predictions with 4 classes\. "
                          r"Received: labels with min=0, max=4\."),
    (np.array([-1, 1, 2]), r"Received: labels with min=-1, max=2\."),
    (np.array([0.0, 1.5, 2.0]), r"expected integer class labels\. Received: a non-integral label 1\.5"),
    (np.array([0, 1]), r"expected one integer label per prediction row.*Received: y_true.shape=\(2,\)\."),
    (np.array([0.0, np.nan, 1.0]), r"non-integral label nan"),
])
def test_sparse_label_errors(labels, match):
    with pytest.raises(ValueError, match=match):
        losses.SparseCategoricalCrossentropy()(labels, np.full((3, 4), 0.25))


def test_loss_lookup_and_type_errors():
    assert isinstance(losses.get("sparse_categorical_crossentropy"), losses.SparseCategoricalCrossentropy)
    assert isinstance(losses.get("MSE"), losses.MeanSquaredError)
    assert isinstance(losses.get("categorical_crossentropy"), losses.CategoricalCrossentropy)
    obj = losses.CategoricalCrossentropy(from_logits=True)
    assert losses.get(obj) is obj
    with pytest.raises(ValueError, match=r"Unknown loss"):
        losses.get("kld")
    with pytest.raises(TypeError, match=r"gradient\(y_true, y_pred\)"):
        losses.get(lambda a, b: 0.0)
    with pytest.raises(TypeError, match=r"dtype=<U"):
        losses.SparseCategoricalCrossentropy()(np.array(["a", "b"]), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"'from_logits' of CategoricalCrossentropy"):
        losses.CategoricalCrossentropy(from_logits="yes")


def test_to_categorical():
    np.testing.assert_array_equal(utils.to_categorical([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    assert utils.to_categorical(np.array([[1], [3]])).shape == (2, 4)
    with pytest.raises(ValueError, match=r"below num_classes=3"):
        utils.to_categorical([3], 3)


# --------------------------------------------------------------------------- optimizers

def two_steps(opt, w0, g1, g2):
    w = np.array(w0, dtype=np.float32)
    live = w
    opt.apply_gradients([(np.array(g1, dtype=np.float32), w)])
    first = w.copy()
    opt.apply_gradients([(np.array(g2, dtype=np.float32), w)])
    assert w is live  # updated in place
    return first, w


W0, G1, G2 = [0.5, -1.0, 2.0], [0.1, -0.2, 0.3], [-0.4, 0.05, 0.2]


def test_sgd_plain_momentum_and_nesterov():
    w0, g1, g2 = (np.array(v) for v in (W0, G1, G2))
    first, second = two_steps(optimizers.SGD(learning_rate=0.1), W0, G1, G2)
    np.testing.assert_allclose(first, w0 - 0.1 * g1, rtol=1e-6)
    np.testing.assert_allclose(second, w0 - 0.1 * g1 - 0.1 * g2, rtol=1e-6)
    # Keras: v = m v - lr g; w += v
    v1 = -0.1 * g1
    v2 = 0.9 * v1 - 0.1 * g2
    first, second = two_steps(optimizers.SGD(learning_rate=0.1, momentum=0.9), W0, G1, G2)
    np.testing.assert_allclose(first, w0 + v1, rtol=1e-6)
    np.testing.assert_allclose(second, w0 + v1 + v2, rtol=1e-6)
    # Nesterov: w += m v - lr g, with v updated first
    first, second = two_steps(optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True), W0, G1, G2)
    np.testing.assert_allclose(first, w0 + 0.9 * v1 - 0.1 * g1, rtol=1e-6)
    np.testing.assert_allclose(second, first + 0.9 * v2 - 0.1 * g2, rtol=1e-6)


def test_adam_matches_keras_formula():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    w = np.array(W0, dtype=np.float64)
    m = np.zeros(3)
    v = np.zeros(3)
    expected = []
    for t, g in enumerate((np.array(G1), np.array(G2)), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        w = w - lr_t * m / (np.sqrt(v) + eps)
        expected.append(w.copy())
    opt = optimizers.Adam(learning_rate=lr)
    first, second = two_steps(opt, W0, G1, G2)
    np.testing.assert_allclose(first, expected[0], rtol=1e-6)
    np.testing.assert_allclose(second, expected[1], rtol=1e-6)
    assert opt.iterations == 2
    # the first Adam step moves every weight by about lr regardless of the gradient's scale
    np.testing.assert_allclose(np.abs(first - np.array(W0)), lr, rtol=1e-3)


def test_rmsprop_matches_keras_formula():
    lr, rho, eps = 0.01, 0.9, 1e-7
    w, v = np.array(W0, dtype=np.float64), np.zeros(3)
    expected = []
    for g in (np.array(G1), np.array(G2)):
        v = rho * v + (1 - rho) * g * g
        w = w - lr * g / np.sqrt(v + eps)
        expected.append(w.copy())
    first, second = two_steps(optimizers.RMSprop(learning_rate=lr), W0, G1, G2)
    np.testing.assert_allclose(first, expected[0], rtol=1e-6)
    np.testing.assert_allclose(second, expected[1], rtol=1e-6)


def test_optimizer_keeps_state_per_variable_and_skips_none():
    opt = optimizers.Adam(learning_rate=0.1)
    a = np.ones(2, dtype=np.float32)
    b = np.ones((2, 2), dtype=np.float32)
    opt.apply_gradients([(np.array([1.0, 1.0], dtype=np.float32), a), (None, b)])
    np.testing.assert_array_equal(b, 1.0)
    opt.apply_gradients([(np.full((2, 2), 5.0, dtype=np.float32), b)])
    # b's first step (its own moments start at zero) moves by about lr, although t = 2 overall
    lr_t = 0.1 * math.sqrt(1 - 0.999 ** 2) / (1 - 0.9 ** 2)
    m, v = 0.1 * 5.0, 0.001 * 25.0
    np.testing.assert_allclose(b, 1.0 - lr_t * m / (math.sqrt(v) + 1e-7), rtol=1e-6)


def test_optimizer_errors_and_lookup():
    with pytest.raises(ValueError, match=r"'learning_rate' of SGD: expected a number in \(0, inf\)\. "
                                         r"Received: learning_rate=0\."):
        optimizers.SGD(learning_rate=0)
    with pytest.raises(ValueError, match=r"'momentum' of SGD: expected a number in \[0, 1\]"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match=r"'beta_1' of Adam: expected a number in \[0, 1\)"):
        optimizers.Adam(beta_1=1.0)
    with pytest.raises(ValueError, match=r"'nesterov' of SGD"):
        optimizers.SGD(nesterov=1)
    opt = optimizers.SGD()
    with pytest.raises(ValueError, match=r"gradient shape=\(3,\), variable shape=\(2,\)"):
        opt.apply_gradients([(np.zeros(3, dtype=np.float32), np.zeros(2, dtype=np.float32))])
    with pytest.raises(TypeError, match=r"float32 NumPy variables"):
        opt.apply_gradients([(np.zeros(2), np.zeros(2))])
    opt.learning_rate = 0.5
    assert opt.get_config() == {"learning_rate": 0.5, "momentum": 0.0, "nesterov": False}
    assert isinstance(optimizers.get("Adam"), optimizers.Adam)
    assert optimizers.get(opt) is opt
    with pytest.raises(ValueError, match=r"Unknown optimizer"):
        optimizers.get("lion")
    with pytest.raises(TypeError, match=r"Received: optimizer=3"):
        optimizers.get(3)
