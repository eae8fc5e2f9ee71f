"""ZeroPadding2D and Cropping2D as layers: shapes and arguments, forward and backward against
the float64 oracle, their op specs, errors, config round trips; and a model chaining them with
Rescaling and LeakyReLU between trainable layers (native one-call step against layer by
layer, predict, save / load). The ops themselves are tested in test_ops_padding.py."""
from __future__ import annotations

import numpy as np
import pytest

import oracle
import pycnn
from pycnn import layers, ops, optimizers
from pycnn.models import Sequential

FWD = dict(rtol=1e-5, atol=1e-5)
BWD = dict(rtol=1e-4, atol=1e-4)


def test_zero_padding_layer_shapes_and_arguments(rng):
    x = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    assert layers.ZeroPadding2D().padding == ((1, 1), (1, 1))
    assert layers.ZeroPadding2D(4).padding == ((4, 4), (4, 4))
    assert layers.ZeroPadding2D((1, 2)).padding == ((1, 1), (2, 2))
    assert layers.ZeroPadding2D(((0, 1), (2, 3))).padding == ((0, 1), (2, 3))
    layer = layers.ZeroPadding2D(((0, 1), (2, 3)))
    out = layer(x)
    assert out.shape == (2, 5, 10, 3) == layer.compute_output_shape(x.shape)
    np.testing.assert_array_equal(out, oracle.zero_padding2d_forward(x, 0, 1, 2, 3))
    assert layer.compute_output_shape((None, None, 5, 3)) == (None, None, 10, 3)
    G = rng.standard_normal(out.shape).astype(np.float32)
    oracle.assert_close(layer.backward(G), oracle.zero_padding2d_backward(G, 0, 1, 2, 3), **BWD)
    assert layers.ZeroPadding2D(0)(x).shape == x.shape


def test_cropping_layer_shapes_and_arguments(rng):
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    layer = layers.Cropping2D(((1, 2), (0, 1)))
    out = layer(x)
    np.testing.assert_array_equal(out, x[:, 1:4, 0:4])
    assert out.shape == layer.compute_output_shape(x.shape)
    G = rng.standard_normal(out.shape).astype(np.float32)
    oracle.assert_close(layer.backward(G), oracle.cropping2d_backward(G, x.shape, 1, 2, 0, 1), **BWD)
    assert layers.Cropping2D(1).cropping == ((1, 1), (1, 1))


def test_specs_describe_the_ops():
    assert layers.ZeroPadding2D(((1, 2), (3, 4))).spec() == ops.OpSpec("zero_padding2d", {"padding": (1, 2, 3, 4)})
    assert layers.Cropping2D(((1, 2), (3, 4))).spec() == ops.OpSpec("cropping2d", {"cropping": (1, 2, 3, 4)})
    assert layers.ZeroPadding2D(2).spec(training=True) == layers.ZeroPadding2D(2).spec(training=False)


@pytest.mark.parametrize("make, match", [
    (lambda: layers.ZeroPadding2D(-1), r"'padding' argument of ZeroPadding2D.*Received: padding=-1"),
    (lambda: layers.ZeroPadding2D((1, 2, 3)), r"'padding' argument of ZeroPadding2D"),
    (lambda: layers.ZeroPadding2D(((1, 2), (3,))), r"'padding' argument of ZeroPadding2D"),
    (lambda: layers.ZeroPadding2D(1.5), r"'padding' argument of ZeroPadding2D"),
    (lambda: layers.ZeroPadding2D(True), r"'padding' argument of ZeroPadding2D"),
    (lambda: layers.ZeroPadding2D(1, data_format="channels_first"), r"channels-last.*data_format='channels_first'"),
    (lambda: layers.Cropping2D("a"), r"'cropping' argument of Cropping2D"),
    (lambda: layers.Cropping2D(-2), r"'cropping' argument of Cropping2D"),
])
def test_padding_cropping_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_padding_cropping_shape_errors():
    with pytest.raises(ValueError, match=r"expected a 4-D input"):
        layers.ZeroPadding2D(1)(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"Computed output size would be zero or negative.*cropping=\(\(2, 2\)"):
        layers.Cropping2D(((2, 2), (0, 0)))(np.zeros((1, 4, 4, 1), np.float32))


@pytest.mark.parametrize("make", [
    lambda: layers.ZeroPadding2D(((1, 2), (3, 0))),
    lambda: layers.Cropping2D((1, 2)),
    lambda: layers.Rescaling([0.5, 1.0, 2.0], offset=-1.0),
    lambda: layers.Rescaling(1 / 255),
    lambda: layers.LeakyReLU(0.1),
])
def test_get_config_round_trip(make, rng):
    layer = make()
    config = layer.get_config()
    twin = type(layer).from_config({**config, "name": layer.name + "_copy"})
    assert {**twin.get_config(), "name": layer.name} == config
    assert twin.spec() == layer.spec()
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(layer(x), twin(x))


# ----------------------------------------------------------------------------- in a model


def small_model(seed=0):
    """Every one of these non-random layers between trainable ones, so gradients flow through them."""
    pycnn.set_random_seed(seed)
    return Sequential([
        layers.Input((9, 8, 3)),
        layers.Rescaling([1 / 255, 2 / 255, 0.5 / 255], offset=[-0.5, 0.0, 0.25]),
        layers.ZeroPadding2D(((1, 2), (0, 1))),
        layers.Conv2D(4, 3, activation="relu"),
        layers.LeakyReLU(0.1),
        layers.Rescaling(2.0, offset=0.5),
        layers.Cropping2D(((1, 0), (0, 2))),
        layers.Conv2D(5, 3, padding="same"),
        layers.Activation("leaky_relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(6, activation="tanh"),
        layers.Dense(3, activation="softmax"),
    ])


def test_save_load_round_trip(tmp_path, rng):
    model = small_model()
    x = rng.random((4, 9, 8, 3), dtype=np.float32)
    path = tmp_path / "m.pycnn"
    model.save(str(path))
    loaded = pycnn.models.load_model(str(path))
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


def one_sgd_step(model, x, y, native, monkeypatch):
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "1" if native else "0")
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    before = model.get_weights()
    loss_value, acc = model.train_on_batch(x, y)
    grads = [b - a for a, b in zip(model.get_weights(), before)]
    model.set_weights(before)
    return loss_value, acc, grads


@pytest.mark.parametrize("batch", [1, 7, 70])
def test_native_step_matches_layer_by_layer(batch, monkeypatch, native_step_calls):
    model = small_model()
    rng = np.random.default_rng(1)
    x = (rng.random((batch, 9, 8, 3)) * 255).astype(np.float32)
    y = rng.integers(0, 3, batch)
    loss_n, acc_n, grads_n = one_sgd_step(model, x, y, True, monkeypatch)
    assert native_step_calls["n"] == 1
    loss_l, acc_l, grads_l = one_sgd_step(model, x, y, False, monkeypatch)
    assert native_step_calls["n"] == 1
    assert loss_n == pytest.approx(loss_l, rel=1e-5)
    assert acc_n == acc_l
    for gn, gl in zip(grads_n, grads_l):
        scale = np.abs(gl).max() + 1e-12
        np.testing.assert_allclose(gn, gl, rtol=1e-4, atol=1e-5 * scale)


def test_native_predict_matches_layer_by_layer(monkeypatch):
    model = small_model()
    x = np.random.default_rng(2).random((11, 9, 8, 3), dtype=np.float32) * 255
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "1")
    native = model.predict(x, verbose=0)
    monkeypatch.setenv("PYCNN_NATIVE_STEP", "0")
    layered = model.predict(x, verbose=0)
    np.testing.assert_allclose(native, layered, rtol=1e-5, atol=1e-6)
