"""The compiled executor (pycnn/executor.py over csrc/executor.cpp) against the layer-by-layer
path: one-call steps, segments around Python layers, threads, frozen layers, fused updates and
the validation of compiled networks."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn
from pycnn import layers, ops, optimizers
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


def test_dropout_in_training_runs_between_native_segments(monkeypatch, native_step_calls):
    """Dropout draws its mask in NumPy while training: the network runs as two native segments
    with the Python layer between them, and matches the layer-by-layer run (same draws)."""
    def build():
        pycnn.set_random_seed(8)
        return Sequential([layers.Input((4, 4, 2)), layers.Conv2D(3, 2, activation="relu"), layers.Flatten(),
                           layers.Dropout(0.5), layers.Dense(3, activation="softmax")])

    x = np.random.default_rng(3).random((5, 4, 4, 2), dtype=np.float32)
    y = np.array([0, 1, 2, 0, 1])
    results = []
    for native in (True, False):
        model = build()
        pycnn.set_random_seed(21)  # the same dropout masks in both runs
        results.append(one_sgd_step(model, x, y, native, monkeypatch))
    assert native_step_calls["n"] == 0  # not one call: the Python layer sits in between
    compiled = pycnn.executor.compiled(model._graph(), [x.shape], True, True, model.trainable_weights)
    assert [type(s).__name__ for s in compiled.steps] == ["_Segment", "_PythonNode", "_Segment"]
    (loss_n, _, grads_n), (loss_l, _, grads_l) = results
    assert loss_n == pytest.approx(loss_l, rel=1e-6)
    for gn, gl in zip(grads_n, grads_l):
        np.testing.assert_allclose(gn, gl, rtol=1e-5, atol=1e-7)
    assert np.any(grads_n[0])  # the conv before the dropout learns through it


def node(kind, inputs, params=(), attrs=None, weights=()):
    return (kind, None, list(inputs), list(params), dict(attrs or {}), list(weights) or [-1] * len(params))


def lenet_nodes():
    """A small chain's nodes and its trained weights (indices 0..3)."""
    rng = np.random.default_rng(0)
    w1, b1 = rng.standard_normal((5, 5, 3, 6)).astype(np.float32), np.zeros(6, np.float32)
    w2, b2 = rng.standard_normal((1176, 10)).astype(np.float32), np.zeros(10, np.float32)
    nodes = [node("conv2d", [0], [w1, b1], {"padding": "same", "activation": "relu"}, [0, 1]),
             node("maxpool2d", [1], attrs={"pool_size": (2, 2), "strides": (2, 2)}), node("flatten", [2]),
             node("dense", [3], [w2, b2], {}, [2, 3])]
    return nodes, [w1, b1, w2, b2]


def test_network_binding_validates_everything():
    x = np.zeros((2, 28, 28, 3), np.float32)
    y = np.array([1, 2])
    good, params = lenet_nodes()
    grads = [np.empty_like(p) for p in params]
    net = ops.Network([(28, 28, 3)], good, [4])
    loss, correct = net.train_step(x, y, "sparse_softmax_crossentropy", grads)
    assert np.isfinite(loss) and 0 <= correct <= 2

    def compile_error(nodes, match, error=ValueError, outputs=(4,)):
        with pytest.raises(error, match=match):
            ops.Network([(28, 28, 3)], nodes, list(outputs))

    bad = list(good)
    bad[0] = node("conv2d", [0], [np.zeros((5, 5, 4, 6), np.float32), params[1]], {"padding": "same"}, [0, 1])
    compile_error(bad, r"Network\(\): node 0 \(op 'conv2d'\) has a kernel of shape \(5, 5, 4, 6\) that does not fit "
                       r"its input of shape \(None, 28, 28, 3\)")
    compile_error([node("lstm", [0])] + good[1:], "no op of this kind is registered. Known ops: 'activation'")
    compile_error([node("maxpool2d", [0], attrs={"pool_size": (32, 32)})], "computed output size would be zero",
                  outputs=(1,))
    compile_error([good[0], node("maxpool2d", [2])] + good[2:], r"node 1 \(op 'maxpool2d'\) reads value 2, but only "
                                                                r"values 0 \.\. 1")
    compile_error([node("conv2d", [0], params[:2], {"padding": 3}, [0, 1])] + good[1:],
                  r"expected attribute 'padding' to be a string\. Received: padding=3", TypeError)
    compile_error([node("conv2d", [0], params[:2], {"strides": (1,)}, [0, 1])] + good[1:],
                  r"expected strides of 2 integers in \[1, 2147483647\]\. Received: strides=\(1,\)")
    compile_error([node("conv2d", [0], params[:2], {"kernel_size": 3}, [0, 1])] + good[1:],
                  r"has no attribute 'kernel_size'\. Expected one of 'strides', 'padding'")
    compile_error([node("conv2d", [0], params[:1], {}, [0])] + good[1:], r"expected 2 parameter\(s\)\. Received: 1")
    compile_error([node("conv2d", [0], [None, params[1]], {}, [-1, 1])] + good[1:],
                  r"needs its parameter 'kernel'\. Received: None")
    compile_error([node("conv2d", [0], [params[0].astype(np.float64), params[1]], {}, [0, 1])] + good[1:],
                  r"to be float32 in native byte order \(read by later calls\)", TypeError)
    compile_error(good[:3] + [node("dense", [3], params[2:], {}, [0, 3])], "shares trained weight 0 with a parameter "
                                                                            "of another size")
    compile_error(good, r"output value 9 does not exist", outputs=(9,))
    with pytest.raises(ValueError, match=r"class indices in \[0, 10\)"):
        net.train_step(x, np.array([1, 10]), "sparse_softmax_crossentropy", grads)
    with pytest.raises(ValueError, match=r"one output of shape \(N, classes\)"):
        ops.Network([(28, 28, 3)], good[:2], [2]).train_step(x, y, "sparse_softmax_crossentropy", [grads[0], grads[1]])
    with pytest.raises(ValueError, match=r"expected 4 grads arrays \(one per trained weight\)\. Received: 3"):
        net.train_step(x, y, "sparse_softmax_crossentropy", grads[:3])
    with pytest.raises(TypeError, match=r"grads\[3\] to be float32"):
        net.train_step(x, y, "sparse_softmax_crossentropy", grads[:3] + [np.zeros(10)])
    with pytest.raises(ValueError, match="C-contiguous"):
        net.train_step(x, y, "sparse_softmax_crossentropy", grads[:2] + [np.zeros((1176, 20), np.float32)[:, ::2],
                                                                         grads[3]])
    with pytest.raises(ValueError, match=r"has no loss named 'hinge'"):
        net.train_step(x, y, "hinge", grads)
    with pytest.raises(ValueError, match=r"expected input 0 of shape \(None, 28, 28, 3\)"):
        net.predict(np.zeros((2, 28, 27, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected 1 input array\(s\)\. Received: 2"):
        net.predict([x, x])
    out = ops.Network([(28, 28, 3)], good[:3] + [node("dense", [3], params[2:], {"activation": "softmax"})],
                      [4]).predict(x)[0]
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


def test_fused_update_argument_is_validated():
    x = np.zeros((2, 28, 28, 3), np.float32)
    y = np.array([1, 2])
    good, params = lenet_nodes()
    net = ops.Network([(28, 28, 3)], good, [4])
    grads = [np.empty_like(p) for p in params]
    slots = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    hyper = [1e-3, 0.9, 0.999, 1e-7]
    net.train_step(x, y, "sparse_softmax_crossentropy", grads, update=("adam", hyper, params, slots))

    def update_error(update, match, error=ValueError):
        with pytest.raises(error, match=match):
            net.train_step(x, y, "sparse_softmax_crossentropy", grads, update=update)

    update_error(("adam", hyper, params + [params[0]], slots), r"one weight and one list of slots per gradient \(4\)")
    update_error(("adam", hyper, [params[0].copy()] + params[1:], slots),
                 r"weights\[0\] to be the array the network reads")
    update_error(("adam", hyper, params, slots[:1] + [[np.zeros(5, np.float32), slots[1][1]]] + slots[2:]),
                 r"slots\[1\]\[0\] of its weight's size")
    update_error(("adam", hyper, params, [[slots[0][0].astype(np.float64), slots[0][1]]] + slots[1:]),
                 r"slots\[0\]\[0\] to be float32", TypeError)
    update_error(("adam", hyper, params, [s[:1] for s in slots]), r"expected 2 slot arrays per weight for update 'adam'")
    update_error(("adam", hyper[:3], params, slots), r"expected 4 hyper-parameters for update 'adam'")
    update_error(("adam", [float("nan")] + hyper[1:], params, slots), r"finite hyper-parameters")
    update_error(("lion", hyper, params, slots), r"has no update named 'lion'")
