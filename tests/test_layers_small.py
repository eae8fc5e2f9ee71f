"""ZeroPadding2D, Cropping2D, Rescaling and LeakyReLU: kernels against the float64 references
of tests/reference_small.py, finite differences of those references, the layers, their
native twins against the layer-by-layer path, and the error messages."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import pycnn
import reference as ref
import reference_small as rs
from pycnn import _core, layers, ops, optimizers
from pycnn.models import Sequential

FWD = dict(rtol=1e-5, atol=1e-5)
BWD = dict(rtol=1e-4, atol=1e-4)

SHAPES = [(1, 1, 1, 1), (2, 5, 3, 3), (3, 4, 7, 1)]
SIDES = [(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 3), (0, 3, 2, 0)]


def fd_check(f_ref, x, rng, tol=1e-6):
    """Finite differences of sum(f_ref(x) * G) against the analytic gradient g(G)."""
    G = rng.standard_normal(f_ref(x).shape)
    x = x.astype(np.float64)
    num = ref.numerical_gradient(lambda: float(np.sum(f_ref(x) * G)), x)
    return G, num


# ----------------------------------------------------------------------------- zero padding, cropping

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sides", SIDES)
def test_zero_padding_kernel_matches_reference(shape, sides, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    out = ops.zero_padding2d_forward(x, sides)
    ref.assert_close(out, rs.zero_padding2d_forward(x, *sides), **FWD, name="pad forward")
    G = rng.standard_normal(out.shape).astype(np.float32)
    ref.assert_close(ops.zero_padding2d_backward(G, sides), rs.zero_padding2d_backward(G, *sides), **BWD,
                     name="pad backward")


@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (1, 3, 6, 1)])
@pytest.mark.parametrize("sides", [(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 2), (0, 2, 0, 3)])
def test_cropping_kernel_matches_reference(shape, sides, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    out = ops.cropping2d_forward(x, sides)
    ref.assert_close(out, rs.cropping2d_forward(x, *sides), **FWD, name="crop forward")
    G = rng.standard_normal(out.shape).astype(np.float32)
    ref.assert_close(ops.cropping2d_backward(G, sides), rs.cropping2d_backward(G, shape, *sides), **BWD,
                     name="crop backward")


def test_padding_and_cropping_references_by_finite_differences(rng):
    x = rng.standard_normal((2, 3, 4, 2))
    G, num = fd_check(lambda a: rs.zero_padding2d_forward(a, 1, 2, 0, 1), x, rng)
    assert ref.rel_error(num, rs.zero_padding2d_backward(G, 1, 2, 0, 1)) < 1e-6
    G, num = fd_check(lambda a: rs.cropping2d_forward(a, 1, 0, 1, 2), x, rng)
    assert ref.rel_error(num, rs.cropping2d_backward(G, x.shape, 1, 0, 1, 2)) < 1e-6


def test_padding_kernel_finite_difference_spot_check(rng):
    x = rng.standard_normal((2, 3, 4, 2)).astype(np.float32)
    sides = (1, 2, 2, 0)
    G = rng.standard_normal(ops.zero_padding2d_forward(x, sides).shape).astype(np.float32)
    idx = ref.random_indices(rng, x.shape, 20)
    num = ref.numerical_gradient(lambda: float(np.sum(ops.zero_padding2d_forward(x, sides) * G)), x, eps=1e-2,
                                 indices=idx)
    grad = ops.zero_padding2d_backward(G, sides)
    assert ref.rel_error(num, [grad[i] for i in idx]) < 1e-2


def test_padding_serial_equals_parallel(rng):
    x = rng.standard_normal((8, 9, 7, 3)).astype(np.float32)
    before = ops.get_num_threads()
    try:
        ops.set_num_threads(1)
        one = ops.zero_padding2d_forward(x, (1, 2, 3, 4)), ops.cropping2d_forward(x, (1, 2, 3, 1))
        ops.set_num_threads(2)
        two = ops.zero_padding2d_forward(x, (1, 2, 3, 4)), ops.cropping2d_forward(x, (1, 2, 3, 1))
    finally:
        ops.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_zero_padding_layer_shapes_and_arguments(rng):
    x = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    assert layers.ZeroPadding2D().padding == ((1, 1), (1, 1))
    assert layers.ZeroPadding2D(4).padding == ((4, 4), (4, 4))
    assert layers.ZeroPadding2D((1, 2)).padding == ((1, 1), (2, 2))
    assert layers.ZeroPadding2D(((0, 1), (2, 3))).padding == ((0, 1), (2, 3))
    layer = layers.ZeroPadding2D(((0, 1), (2, 3)))
    out = layer(x)
    assert out.shape == (2, 5, 10, 3) == layer.compute_output_shape(x.shape)
    assert layer.compute_output_shape((None, None, 5, 3)) == (None, None, 10, 3)
    G = rng.standard_normal(out.shape).astype(np.float32)
    ref.assert_close(layer.backward(G), rs.zero_padding2d_backward(G, 0, 1, 2, 3), **BWD)
    assert layers.ZeroPadding2D(0)(x).shape == x.shape


def test_cropping_layer_shapes_and_arguments(rng):
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    layer = layers.Cropping2D(((1, 2), (0, 1)))
    out = layer(x)
    np.testing.assert_array_equal(out, x[:, 1:4, 0:4])
    G = rng.standard_normal(out.shape).astype(np.float32)
    ref.assert_close(layer.backward(G), rs.cropping2d_backward(G, x.shape, 1, 2, 0, 1), **BWD)


@pytest.mark.parametrize("make, match", [
    (lambda: layers.ZeroPadding2D(-1), r"'padding' argument of ZeroPadding2D.*Received: padding=-1"),
    (lambda: layers.ZeroPadding2D((1, 2, 3)), r"'padding' argument of ZeroPadding2D"),
    (lambda: layers.ZeroPadding2D(((1, 2), (3,))), r"'padding' argument of ZeroPadding2D"),
    (lambda: layers.ZeroPadding2D(1.5), r"'padding' argument of ZeroPadding2D"),
    (lambda: layers.ZeroPadding2D(True), r"'padding' argument of ZeroPadding2D"),
    (lambda: layers.ZeroPadding2D(1, data_format="channels_first"), r"channels-last.*data_format='channels_first'"),
    (lambda: layers.Cropping2D("a"), r"'cropping' argument of Cropping2D"),
])
def test_padding_cropping_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_padding_cropping_shape_errors():
    with pytest.raises(ValueError, match=r"expected a 4-D input"):
        layers.ZeroPadding2D(1)(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"Computed output size would be zero or negative.*cropping=\(\(2, 2\)"):
        layers.Cropping2D(((2, 2), (0, 0)))(np.zeros((1, 4, 4, 1), np.float32))


def test_padding_cropping_binding_errors():
    x = np.zeros((1, 3, 3, 1), np.float32)
    with pytest.raises(ValueError, match=r"zero_padding2d_forward\(\) expected 'inp' to be a 4-D array"):
        ops.zero_padding2d_forward(np.zeros((3, 3)), (1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"expected 'padding' to be 4 integers >= 0.*padding=\(1, 1\)"):
        ops.zero_padding2d_forward(x, (1, 1))
    with pytest.raises(ValueError, match=r"padding=\(1, 1, -1, 1\)"):
        ops.zero_padding2d_forward(x, (1, 1, -1, 1))
    with pytest.raises(ValueError, match=r"zero_padding2d_backward\(\): computed output size would be zero"):
        ops.zero_padding2d_backward(x, (2, 1, 0, 0))
    with pytest.raises(ValueError, match=r"cropping2d_forward\(\): computed output size"):
        ops.cropping2d_forward(x, (0, 0, 3, 0))
    with pytest.raises(ValueError, match=r"with every dimension >= 1"):
        ops.cropping2d_backward(np.zeros((0, 3, 3, 1), np.float32), (0, 0, 0, 0))


# ----------------------------------------------------------------------------- rescaling

@pytest.mark.parametrize("scale, offset", [(1 / 255, 0.0), (2.0, -1.0), ([0.5, 2.0, -1.0], 0.25),
                                           (0.5, [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [0.0, -1.0, 1.0])])
def test_rescaling_kernel_and_layer_match_reference(scale, offset, rng):
    x = (rng.random((2, 5, 4, 3)) * 255).astype(np.float32)
    want = rs.rescaling_forward(x, scale, offset)
    ref.assert_close(ops.rescaling_forward(x, scale, offset), want, **FWD)
    layer = layers.Rescaling(scale, offset)
    ref.assert_close(layer(x), want, **FWD)
    G = rng.standard_normal(x.shape).astype(np.float32)
    ref.assert_close(ops.rescaling_backward(G, scale), rs.rescaling_backward(G, scale), **BWD)
    ref.assert_close(layer.backward(G), rs.rescaling_backward(G, scale), **BWD)


def test_rescaling_of_uint8_and_any_rank(rng):
    x = rng.integers(0, 256, (3, 4, 4, 3)).astype(np.uint8)
    ref.assert_close(layers.Rescaling(1 / 255)(x), x / 255.0, **FWD)
    v = rng.standard_normal((5, 7)).astype(np.float32)
    ref.assert_close(layers.Rescaling(3.0, 1.0)(v), v * 3.0 + 1.0, **FWD)
    # shape (1, 1, C) broadcasts like (C,)
    ref.assert_close(layers.Rescaling(np.array([[[1.0, 2.0, 3.0]]]))(x), x * np.array([1.0, 2.0, 3.0]), **FWD)


def test_rescaling_reference_by_finite_differences(rng):
    x = rng.standard_normal((2, 3, 2, 3))
    scale = np.array([0.5, -2.0, 3.0])
    G, num = fd_check(lambda a: rs.rescaling_forward(a, scale, 1.0), x, rng)
    assert ref.rel_error(num, rs.rescaling_backward(G, scale)) < 1e-6


def test_rescaling_errors():
    with pytest.raises(ValueError, match=r"'scale' of Rescaling.*Received: scale='a'"):
        layers.Rescaling("a")
    with pytest.raises(ValueError, match=r"'offset' of Rescaling"):
        layers.Rescaling(1.0, offset=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"same number of channels"):
        layers.Rescaling([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"expected input with 2 channels on the last axis.*\(None, 3, 3, 3\)"):
        layers.Rescaling([1.0, 2.0])(np.zeros((4, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"rescaling_forward\(\) expected 'scale' to be a number or a 1-D array of 1 "
                                         r"or 3 values"):
        ops.rescaling_forward(np.zeros((2, 3), np.float32), [1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match=r"rescaling_backward\(\) expected 'scale'"):
        ops.rescaling_backward(np.zeros((2, 3), np.float32), np.ones((3, 1)))


# ----------------------------------------------------------------------------- leaky relu

def kinkless(rng, shape):
    """Inputs with |x| >= 1e-3, so finite differences never straddle the kink at 0."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 1e-3, 0.5, x)


@pytest.mark.parametrize("slope", [0.0, 0.2, 0.3, 1.5])
def test_leaky_relu_kernel_matches_reference(slope, rng):
    x = kinkless(rng, (3, 4, 5, 2)).astype(np.float32)
    x[0, 0, 0, 0] = 0.0
    out = ops.leaky_relu_forward(x, slope)
    ref.assert_close(out, rs.leaky_relu_forward(x, slope), **FWD)
    G = rng.standard_normal(x.shape).astype(np.float32)
    ref.assert_close(ops.leaky_relu_backward(G, out, slope), rs.leaky_relu_backward(G, x, slope), **BWD)


def test_leaky_relu_reference_and_kernel_by_finite_differences(rng):
    x = kinkless(rng, (2, 3, 3, 2))
    G, num = fd_check(lambda a: rs.leaky_relu_forward(a, 0.3), x, rng)
    assert ref.rel_error(num, rs.leaky_relu_backward(G, x, 0.3)) < 1e-6
    x32 = x.astype(np.float32)
    G32 = G.astype(np.float32)
    idx = ref.random_indices(rng, x.shape, 20)
    num = ref.numerical_gradient(lambda: float(np.sum(ops.leaky_relu_forward(x32, 0.3) * G32)), x32, eps=1e-2,
                                 indices=idx)
    grad = ops.leaky_relu_backward(G32, ops.leaky_relu_forward(x32, 0.3), 0.3)
    assert ref.rel_error(num, [grad[i] for i in idx]) < 1e-2


def test_leaky_relu_keeps_nan():
    out = ops.leaky_relu_forward(np.array([np.nan, -1.0, 2.0], np.float32), 0.5)
    assert np.isnan(out[0]) and out[1] == -0.5 and out[2] == 2.0


def test_leaky_relu_layer_defaults_and_alpha(rng):
    x = kinkless(rng, (2, 3)).astype(np.float32)
    assert layers.LeakyReLU().negative_slope == 0.3
    ref.assert_close(layers.LeakyReLU()(x), rs.leaky_relu_forward(x, 0.3), **FWD)
    with pytest.warns(UserWarning, match="alpha"):
        legacy = layers.LeakyReLU(alpha=0.1)
    assert legacy.negative_slope == 0.1
    ref.assert_close(legacy(x), rs.leaky_relu_forward(x, 0.1), **FWD)
    # the activation name: Keras's activation default 0.2
    ref.assert_close(pycnn.activations.leaky_relu(x), rs.leaky_relu_forward(x, 0.2), **FWD)
    act = layers.Activation("leaky_relu")
    ref.assert_close(act(x), rs.leaky_relu_forward(x, 0.2), **FWD)
    G = rng.standard_normal(x.shape).astype(np.float32)
    ref.assert_close(act.backward(G), rs.leaky_relu_backward(G, x, 0.2), **BWD)


def test_leaky_relu_errors():
    with pytest.raises(ValueError, match=r"negative_slope value of a Leaky ReLU layer.*negative_slope=-0.1"):
        layers.LeakyReLU(-0.1)
    with pytest.raises(ValueError, match=r"negative_slope=None"):
        layers.LeakyReLU(None)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments: beta"):
        layers.LeakyReLU(beta=1.0)
    with pytest.raises(ValueError, match=r"leaky_relu_forward\(\) expected negative_slope to be a finite number >= 0"):
        ops.leaky_relu_forward(np.zeros(3, np.float32), -1.0)
    with pytest.raises(ValueError, match=r"leaky_relu_backward\(\) expected 'dout' and 'out' to have the same shape"):
        ops.leaky_relu_backward(np.zeros(3, np.float32), np.zeros(4, np.float32), 0.2)


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_kernel_layers_with_leaky_relu_activation(kind, rng):
    if kind == "conv":
        layer = layers.Conv2D(4, 3, padding="same", activation="leaky_relu")
        x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    else:
        layer = layers.Dense(4, activation="leaky_relu")
        x = rng.standard_normal((5, 6)).astype(np.float32)
    out = layer(x)
    layer_lin = type(layer).from_config({**layer.get_config(), "activation": None, "name": "lin_" + kind})
    layer_lin.build(layer.input_shape)
    layer_lin.set_weights(layer.get_weights())
    z = layer_lin(x)
    ref.assert_close(out, rs.leaky_relu_forward(z, 0.2), **FWD)
    G = rng.standard_normal(out.shape).astype(np.float32)
    dinp = layer.backward(G)
    dlin = layer_lin.backward(rs.leaky_relu_backward(G, z, 0.2).astype(np.float32))
    ref.assert_close(dinp, dlin, **BWD)
    for a, b in zip(layer.get_gradients(), layer_lin.get_gradients()):
        ref.assert_close(a, b, **BWD, scale_atol=True)


# ----------------------------------------------------------------------------- config round trips

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
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(layer(x), twin(x))


def test_save_load_round_trip(tmp_path, rng):
    model = small_model()
    x = rng.random((4, 9, 8, 3), dtype=np.float32)
    path = tmp_path / "m.pycnn"
    model.save(str(path))
    loaded = pycnn.models.load_model(str(path))
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


# ----------------------------------------------------------------------------- native step

def small_model(seed=0):
    """Every new non-random layer between trainable ones, so gradients flow through them."""
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


def test_twins_describe_the_nodes():
    assert layers.ZeroPadding2D(((1, 2), (3, 4))).native_twin(True, False) == \
        layers.NativeTwin("zero_padding2d", (), (1, 2, 3, 4))
    twin = layers.Rescaling(0.5, 1.0).native_twin(True, False)
    assert twin.kind == "rescaling" and [p.tolist() for p in twin.params] == [[0.5], [1.0]]
    twin = layers.Rescaling([1.0, 2.0], 1.0).native_twin(True, False)
    assert [p.tolist() for p in twin.params] == [[1.0, 2.0], [1.0, 1.0]]
    twin = layers.LeakyReLU(0.25).native_twin(True, False)
    assert twin.kind == "leaky_relu" and twin.params[0].tolist() == [0.25]


def test_network_binding_validates_the_new_nodes():
    x = np.zeros((2, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"layers\[0\] \('zero_padding2d'\) expected 0 params, 4 ints"):
        _core.network_predict(x, [("zero_padding2d", (0,), (), None, (1, 1), ())])
    with pytest.raises(ValueError, match=r"expected padding sizes >= 0"):
        _core.network_predict(x, [("zero_padding2d", (0,), (), None, (1, 1, -1, 0), ())])
    with pytest.raises(ValueError, match=r"would crop the input to nothing"):
        _core.network_predict(x, [("cropping2d", (0,), (), None, (2, 2, 0, 0), ())])
    with pytest.raises(ValueError, match=r"needs \(H, W, C\) input"):
        _core.network_predict(np.zeros((2, 5), np.float32), [("cropping2d", (0,), (), None, (0, 0, 0, 0), ())])
    one = np.ones(1, np.float32)
    with pytest.raises(ValueError, match=r"expected scale and offset of shape \(1,\) or \(3,\)"):
        _core.network_predict(x, [("rescaling", (0,), (np.ones(2, np.float32), np.ones(2, np.float32)), None, (), ())])
    with pytest.raises(ValueError, match=r"both the same"):
        _core.network_predict(x, [("rescaling", (0,), (one, np.ones(3, np.float32)), None, (), ())])
    with pytest.raises(ValueError, match=r"expected negative_slope >= 0"):
        _core.network_predict(x, [("leaky_relu", (0,), (-one,), None, (), ())])
    with pytest.raises(ValueError, match=r"expected negative_slope as a parameter of shape \(1,\)"):
        _core.network_predict(x, [("leaky_relu", (0,), (np.ones(2, np.float32),), None, (), ())])
    out = _core.network_predict(x + 1, [("rescaling", (0,), (one * 2, one), None, (), ()),
                                        ("zero_padding2d", (1,), (), None, (1, 0, 0, 2), ()),
                                        ("cropping2d", (2,), (), None, (0, 1, 2, 0), ()),
                                        ("leaky_relu", (3,), (one,), None, (), ())])
    np.testing.assert_array_equal(out, np.pad((x + 1) * 2 + 1, ((0, 0), (1, 0), (0, 2), (0, 0)))[:, :4, 2:])
