"""The one-call native network step (csrc/network.cpp) against the layer-by-layer path."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn
from pycnn import _core, layers, optimizers
from pycnn.models import Sequential


def lenet(seed=0):
    pycnn.set_random_seed(seed)
    return pycnn.models.lenet(input_shape=(32, 32, 3), num_classes=10)


def assorted(seed=0):
    """Every native layer kind: strides, 'same' with an even kernel, avg pooling that does not
    tile, an Activation layer, a no-op Dropout, sigmoid/tanh, no bias."""
    pycnn.set_random_seed(seed)
    return Sequential([
        layers.Input((13, 11, 2)),
        layers.Conv2D(5, (4, 3), strides=(2, 1), padding="same", activation="tanh"),
        layers.AveragePooling2D((2, 3), strides=(1, 2), padding="same"),
        layers.Conv2D(7, 3, activation="sigmoid", use_bias=False),
        layers.MaxPooling2D(2, strides=1),
        layers.Activation("relu"),
        layers.Flatten(),
        layers.Dropout(0.0),
        layers.Dense(9, activation="relu"),
        layers.Dense(4, activation="softmax"),
    ])


def one_sgd_step(model, x, y, native, monkeypatch, loss="sparse_categorical_crossentropy"):
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "1" if native else "0")
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss=loss, metrics=["accuracy"])
    before = model.get_weights()
    loss_value, acc = model.train_on_batch(x, y)
    grads = [b - a for a, b in zip(model.get_weights(), before)]  # w_new = w - 1.0 * g
    model.set_weights(before)
    return loss_value, acc, grads


# Batch 200: each thread runs its samples in several chunks (csrc/network.cpp, kChunkBytes).
@pytest.mark.parametrize("build, shape, classes", [(lenet, (32, 32, 32, 3), 10), (lenet, (200, 32, 32, 3), 10),
                                                   (assorted, (9, 13, 11, 2), 4)])
def test_native_step_matches_layer_by_layer(build, shape, classes, monkeypatch, native_step_calls):
    model = build()
    rng = np.random.default_rng(1)
    x = rng.random(shape, dtype=np.float32)
    y = rng.integers(0, classes, shape[0])
    calls = native_step_calls
    loss_n, acc_n, grads_n = one_sgd_step(model, x, y, True, monkeypatch)
    assert calls["n"] == 1
    loss_l, acc_l, grads_l = one_sgd_step(model, x, y, False, monkeypatch)
    assert calls["n"] == 1
    assert loss_n == pytest.approx(loss_l, rel=1e-5)
    assert acc_n == acc_l
    for gn, gl in zip(grads_n, grads_l):
        scale = np.abs(gl).max() + 1e-12
        np.testing.assert_allclose(gn, gl, rtol=1e-4, atol=1e-5 * scale)


def test_native_step_with_logits_loss(monkeypatch):
    pycnn.set_random_seed(3)
    model = Sequential([layers.Input((6, 6, 1)), layers.Conv2D(3, 3, activation="relu"), layers.Flatten(),
                        layers.Dense(5)])
    x = np.random.default_rng(2).standard_normal((8, 6, 6, 1)).astype(np.float32)
    y = np.arange(8) % 5
    loss = pycnn.losses.SparseCategoricalCrossentropy(from_logits=True)
    native = one_sgd_step(model, x, y, True, monkeypatch, loss=loss)
    layered = one_sgd_step(model, x, y, False, monkeypatch, loss=loss)
    assert native[0] == pytest.approx(layered[0], rel=1e-5)
    for gn, gl in zip(native[2], layered[2]):
        np.testing.assert_allclose(gn, gl, rtol=1e-4, atol=1e-6)


def test_predict_and_evaluate_match_layer_by_layer(monkeypatch):
    model = lenet(4)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(5)
    x = rng.random((70, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 70)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "1")
    p_native, e_native = model.predict(x, batch_size=32), model.evaluate(x, y, batch_size=32)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "0")
    p_layer, e_layer = model.predict(x, batch_size=32), model.evaluate(x, y, batch_size=32)
    np.testing.assert_allclose(p_native, p_layer, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(e_native, e_layer, rtol=1e-5)
    # One batch of 200: each thread runs several chunks (csrc/network.cpp, kChunkBytes).
    big = rng.random((200, 32, 32, 3), dtype=np.float32)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "1")
    p_native = model.predict(big, batch_size=200)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "0")
    np.testing.assert_allclose(p_native, model.predict(big, batch_size=200), rtol=1e-5, atol=1e-6)


def test_native_step_one_and_two_threads_agree(monkeypatch):
    x = np.random.default_rng(6).random((16, 32, 32, 3), dtype=np.float32)
    y = np.arange(16) % 10
    saved = pycnn.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            pycnn.set_num_threads(threads)
            results.append(one_sgd_step(lenet(7), x, y, True, monkeypatch))
    finally:
        pycnn.set_num_threads(saved)
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for g1, g2 in zip(results[0][2], results[1][2]):
        np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-6 * (np.abs(g1).max() + 1e-12))


def test_dropout_in_training_falls_back_to_layer_by_layer(monkeypatch):
    pycnn.set_random_seed(8)
    model = Sequential([layers.Input((4, 4, 1)), layers.Flatten(), layers.Dropout(0.5),
                        layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")

    def forbidden(*args, **kwargs):
        raise AssertionError("Dropout(0.5) has no native twin; training must run layer by layer")

    monkeypatch.setattr(_core, "network_train_step", forbidden)
    x = np.ones((5, 4, 4, 1), np.float32)
    assert np.isfinite(model.train_on_batch(x, np.array([0, 1, 2, 0, 1])))


def lenet_tuples(grads=True):
    """Node tuples (kind, inputs, params, grads, ints, strs) of a small chain."""
    rng = np.random.default_rng(0)
    w1, b1 = rng.standard_normal((5, 5, 3, 6)).astype(np.float32), np.zeros(6, np.float32)
    w2, b2 = rng.standard_normal((1176, 10)).astype(np.float32), np.zeros(10, np.float32)
    g = [np.zeros_like(a) for a in (w1, b1, w2, b2)] if grads else [None] * 4
    return [("conv2d", (0,), (w1, b1), (g[0], g[1]), (1, 1), ("same", "relu")),
            ("maxpool2d", (1,), (), None, (2, 2, 2, 2), ("valid",)), ("flatten", (2,), (), None, (), ()),
            ("dense", (3,), (w2, b2), (g[2], g[3]), (), ("linear",))]


def replace(node, **fields):
    names = ("kind", "inputs", "params", "grads", "ints", "strs")
    return tuple(fields.get(n, v) for n, v in zip(names, node))


def test_network_binding_validates_everything():
    x = np.zeros((2, 28, 28, 3), np.float32)
    y = np.array([1, 2])
    good = lenet_tuples()
    loss, correct = _core.network_train_step(x, y, good)
    assert np.isfinite(loss) and 0 <= correct <= 2
    bad_channels = [replace(good[0], params=(np.zeros((5, 5, 4, 6), np.float32), good[0][2][1]))] + good[1:]
    with pytest.raises(ValueError, match=r"network_train_step\(\) layers\[0\] \('conv2d'\) has a weight of shape "
                                         r"\(5, 5, 4, 6\) that does not fit its input of shape \(None, 28, 28, 3\)"):
        _core.network_train_step(x, y, bad_channels)
    with pytest.raises(ValueError, match="does not know layer kind 'lstm'"):
        _core.network_train_step(x, y, [("lstm", (0,), (), None, (), ())] + good[1:])
    float64_grad = good[:3] + [replace(good[3], grads=(np.zeros((1176, 10)), good[3][3][1]))]
    with pytest.raises(TypeError, match=r"dweight\[3\] to be float32 \(updated in place\)"):
        _core.network_train_step(x, y, float64_grad)
    strided = good[:3] + [replace(good[3], grads=(np.zeros((1176, 20), np.float32)[:, ::2], good[3][3][1]))]
    with pytest.raises(ValueError, match="writeable C-contiguous"):
        _core.network_train_step(x, y, strided)
    with pytest.raises(ValueError, match=r"class indices in \[0, 10\)"):
        _core.network_train_step(x, np.array([1, 10]), good)
    with pytest.raises(ValueError, match=r"end in \(N, classes\) logits"):
        _core.network_train_step(x, y, good[:2])
    with pytest.raises(ValueError, match="computed output size would be zero"):
        _core.network_train_step(np.zeros((2, 1, 1, 3), np.float32), y, [replace(good[1], inputs=(0,))])
    with pytest.raises(ValueError, match=r"layers\[0\] to be \(kind, inputs, params, grads, ints, strs\[, floats\[, state\]\]\). "
                                         r"Received a tuple of 5"):
        _core.network_train_step(x, y, [good[0][:5]] + good[1:])
    with pytest.raises(ValueError, match=r"layers\[1\] \('maxpool2d'\) reads value 2, but only values 0 \.\. 1"):
        _core.network_train_step(x, y, [good[0], replace(good[1], inputs=(2,))] + good[2:])
    with pytest.raises(TypeError, match=r"layers\[0\]'s strs to hold strings"):
        _core.network_train_step(x, y, [replace(good[0], strs=("same", 3))] + good[1:])
    with pytest.raises(ValueError, match=r"expected 2 params, 2 ints and 2 strs. Received: 2, 1 and 2"):
        _core.network_train_step(x, y, [replace(good[0], ints=(1,))] + good[1:])
    out = _core.network_predict(x, lenet_tuples(grads=False), softmax=True)
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_native_step_through_a_frozen_middle_layer(monkeypatch):
    """A frozen layer between trainable ones still passes its input gradient back."""
    rng = np.random.default_rng(9)
    x = rng.random((12, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 12)
    results = []
    for native in (True, False):
        model = lenet(10)
        model.layers[2].trainable = False  # conv2d_1, between conv2d and the dense layers
        results.append(one_sgd_step(model, x, y, native, monkeypatch))
    (loss_n, _, grads_n), (loss_l, _, grads_l) = results
    assert loss_n == pytest.approx(loss_l, rel=1e-5)
    assert len(grads_n) == len(grads_l)
    for gn, gl in zip(grads_n, grads_l):
        np.testing.assert_allclose(gn, gl, rtol=1e-4, atol=1e-5 * (np.abs(gl).max() + 1e-12))
    frozen_kernel_index = 2  # weights: conv2d kernel, bias, conv2d_1 kernel, bias, ...
    assert not np.any(grads_n[frozen_kernel_index]) and not np.any(grads_n[frozen_kernel_index + 1])
    assert np.any(grads_n[0])  # the first conv, behind the frozen one, still learns


def test_fused_adam_matches_layer_by_layer_adam(monkeypatch):
    """Adam applied inside the native step gives the weights the separate update gives."""
    rng = np.random.default_rng(11)
    x = rng.random((40, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 40)
    weights = []
    for native in (True, False):
        monkeypatch.setenv("PYCNN_NATIVE_STEP", "1" if native else "0")
        model = lenet(12)
        model.layers[2].trainable = False
        model.compile(optimizer=optimizers.Adam(learning_rate=1e-2), loss="sparse_categorical_crossentropy")
        for _ in range(3):
            model.train_on_batch(x, y)
        assert model.optimizer.iterations == 3
        weights.append(model.get_weights())
    for wn, wl in zip(*weights):
        np.testing.assert_allclose(wn, wl, rtol=1e-4, atol=1e-5)


def test_fused_adam_argument_is_validated():
    x = np.zeros((2, 28, 28, 3), np.float32)
    y = np.array([1, 2])
    good = lenet_tuples()
    params = [good[0][2][0], good[0][2][1], good[3][2][0], good[3][2][1]]
    zeros = [np.zeros_like(p) for p in params]
    _core.network_train_step(x, y, good, adam=(1e-3, 0.9, 0.999, 1e-7, params, zeros, [z.copy() for z in zeros]))
    with pytest.raises(ValueError, match=r"expected 4 adam parameters"):
        _core.network_train_step(x, y, good, adam=(1e-3, 0.9, 0.999, 1e-7, params + [params[0]], zeros + [zeros[0]],
                                                   zeros + [zeros[0]]))
    with pytest.raises(ValueError, match=r"adam weights\[0\] to be the same array"):
        _core.network_train_step(x, y, good, adam=(1e-3, 0.9, 0.999, 1e-7, [params[0].copy()] + params[1:], zeros,
                                                   zeros))
    with pytest.raises(ValueError, match=r"adam m\[1\] and v\[1\] of 6 values"):
        _core.network_train_step(x, y, good, adam=(1e-3, 0.9, 0.999, 1e-7, params, zeros[:1] + [np.zeros(5, np.float32)]
                                                   + zeros[2:], zeros))
    with pytest.raises(TypeError, match=r"adam m\[0\] to be float32"):
        _core.network_train_step(x, y, good, adam=(1e-3, 0.9, 0.999, 1e-7, params, [zeros[0].astype(np.float64)]
                                                   + zeros[1:], zeros))
