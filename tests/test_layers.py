"""Layer-level tests: argument validation, names, shapes, weights, forward vs small NumPy
oracles, and backward vs central finite differences of the layer's own forward."""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from pycnn import activations, layers, ops, utils


@pytest.fixture(autouse=True)
def _fresh_session():
    utils.clear_session()
    utils.set_random_seed(1234)
    yield
    utils.clear_session()


# --------------------------------------------------------------------------- helpers

def finite_difference_check(layer, x, seed=0, n_coords=20, eps=1e-2, rtol=1e-2, atol=2e-3, check_input=True):
    """Compare layer.backward / get_gradients with central differences of the float32 forward.

    loss = sum(layer(x) * G) with a random G (an all-ones G hides transposition bugs).
    Coordinates where a ReLU/max switches between x - eps and x + eps are skipped.
    """
    rng = np.random.default_rng(seed)
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = layer(x)
    G = rng.standard_normal(out.shape).astype(np.float32)
    dx = layer.backward(G)
    grads = [g.copy() for g in layer.get_gradients()]
    base_pattern = out > 0

    def loss(inp):
        y = layer(inp)
        return float(np.sum(y.astype(np.float64) * G)), y > 0

    def compare(analytic, perturb, shape):
        checked = 0
        for flat in rng.choice(int(np.prod(shape)), size=min(n_coords, int(np.prod(shape))), replace=False):
            idx = np.unravel_index(flat, shape)
            lp, pp = perturb(idx, eps)
            lm, pm = perturb(idx, -eps)
            perturb(idx, 0.0)
            if not (np.array_equal(pp, base_pattern) and np.array_equal(pm, base_pattern)):
                continue  # a ReLU kink lies inside [x - eps, x + eps]
            fd = (lp - lm) / (2 * eps)
            assert abs(analytic[idx] - fd) <= atol + rtol * max(abs(fd), abs(analytic[idx])), \
                (idx, analytic[idx], fd)
            checked += 1
        assert checked >= min(n_coords, int(np.prod(shape))) // 2, "too many coordinates skipped"

    if check_input:
        def perturb_x(idx, delta):
            xp = x.copy()
            xp[idx] += delta
            return loss(xp)
        compare(dx, perturb_x, x.shape)
    for k, param in enumerate(layer.weights):
        original = param.copy()

        def perturb_w(idx, delta, param=param, original=original):
            param[...] = original
            param[idx] += delta
            return loss(x)
        compare(grads[k], perturb_w, param.shape)
        param[...] = original
    return dx, grads


# --------------------------------------------------------------------------- names and construction

def test_automatic_names_follow_keras():
    names = [layers.Conv2D(1, 2).name, layers.Conv2D(1, 2).name, layers.MaxPooling2D().name,
             layers.Flatten().name, layers.Dense(3).name, layers.Dense(3).name,
             layers.AveragePooling2D().name, layers.Dropout(0.5).name, layers.Activation("relu").name]
    assert names == ["conv2d", "conv2d_1", "max_pooling2d", "flatten", "dense", "dense_1",
                     "average_pooling2d", "dropout", "activation"]
    utils.clear_session()
    assert layers.Conv2D(1, 2).name == "conv2d"
    assert layers.Dense(2, name="head").name == "head"


def test_constructor_normalises_arguments():
    conv = layers.Conv2D(8, 3, strides=2, padding="SAME", activation="ReLU")
    assert conv.kernel_size == (3, 3) and conv.strides == (2, 2)
    assert conv.padding == "same" and conv.activation == "relu"
    assert layers.Conv2D(8, (3, 5), activation=None).activation == "linear"
    assert layers.Conv2D(8, 3, activation=activations.tanh).activation == "tanh"
    assert layers.MaxPooling2D(3).strides == (3, 3)
    assert layers.MaxPooling2D((2, 3), strides=1).strides == (1, 1)
    assert layers.Convolution2D is layers.Conv2D


@pytest.mark.parametrize("make, match", [
    (lambda: layers.Conv2D(0, 3),
     r"Invalid value for argument 'filters' of Conv2D: expected a positive integer\. Received: filters=0\."),
    (lambda: layers.Conv2D(2.5, 3), r"'filters' of Conv2D.*Received: filters=2\.5\."),
    (lambda: layers.Conv2D(4, (3, 0)),
     r"The 'kernel_size' argument of Conv2D must be a tuple of 2 positive integers\. Received: kernel_size=\(3, 0\)\."),
    (lambda: layers.Conv2D(4, (3, 3, 3)), r"'kernel_size' argument of Conv2D must be an int or a tuple of 2"),
    (lambda: layers.Conv2D(4, 3, strides=0), r"'strides' argument of Conv2D.*Received: strides=0\."),
    (lambda: layers.Conv2D(4, 3, padding="full"),
     r"Invalid value for argument 'padding' of Conv2D: expected 'valid' or 'same'\. Received: padding='full'\."),
    (lambda: layers.Conv2D(4, 3, activation="selu"),
     r"Invalid value for argument 'activation' of Conv2D: expected one of .*Received: activation='selu'\."),
    (lambda: layers.Conv2D(4, 3, use_bias="yes"), r"'use_bias' of Conv2D: expected True or False"),
    (lambda: layers.Conv2D(4, 3, kernel_initializer="magic"), r"'kernel_initializer' of Conv2D.*'magic'"),
    (lambda: layers.Conv2D(4, 3, data_format="channels_first"), r"only 'channels_last'"),
    (lambda: layers.Conv2D(4, 3, strides=2, dilation_rate=2),
     r"strides > 1 together with dilation_rate > 1.*Received: strides=\(2, 2\), dilation_rate=\(2, 2\)"),
    (lambda: layers.Conv2D(4, 3, input_shape=(28, 0, 1)), r"'input_shape' argument of Conv2D"),
    (lambda: layers.Conv2D(4, 3, name=""), r"'name' of Conv2D: expected a non-empty string"),
    (lambda: layers.MaxPooling2D(0), r"'pool_size' argument of MaxPooling2D.*Received: pool_size=0\."),
    (lambda: layers.AveragePooling2D(2, strides=(1, -1)), r"'strides' argument of AveragePooling2D"),
    (lambda: layers.MaxPooling2D(2, padding=3), r"'padding' of MaxPooling2D.*Received: padding=3\."),
    (lambda: layers.Dense(-1), r"'units' of Dense: expected a positive integer\. Received: units=-1\."),
    (lambda: layers.Dense(10, activation="swish"), r"'activation' of Dense"),
    (lambda: layers.Activation("elu"), r"'activation' of Activation.*Received: activation='elu'\."),
    (lambda: layers.Activation(None), r"'activation' of Activation"),
    (lambda: layers.Dropout(1.0), r"'rate' of Dropout: expected a number in \[0, 1\)\. Received: rate=1\.0\."),
    (lambda: layers.Dropout(-0.1), r"'rate' of Dropout"),
    (lambda: layers.Dropout(0.5, seed=-3), r"'seed' of Dropout"),
    (lambda: layers.Input((28, -28, 1)), r"'shape' argument of Input"),
])
def test_constructor_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --------------------------------------------------------------------------- shapes and building

def test_build_is_lazy_and_shapes_are_keras():
    conv = layers.Conv2D(6, 5, padding="same", activation="relu")
    assert not conv.built and conv.weights == []
    with pytest.raises(RuntimeError, match="conv2d' has not been built"):
        conv.count_params()
    with pytest.raises(RuntimeError, match="has not been built"):
        conv.output_shape
    out = conv(np.zeros((2, 32, 32, 3), dtype=np.float32))
    assert conv.built and conv.input_shape == (None, 32, 32, 3)
    assert out.shape == (2, 32, 32, 6) and out.dtype == np.float32
    assert conv.output_shape == (None, 32, 32, 6)
    assert [w.shape for w in conv.get_weights()] == [(5, 5, 3, 6), (6,)]
    assert conv.count_params() == 456
    assert layers.Conv2D(16, 5).compute_output_shape((None, 16, 16, 6)) == (None, 12, 12, 16)
    assert layers.Conv2D(4, 3, strides=2, padding="same").compute_output_shape((None, 7, 8, 1)) == (None, 4, 4, 4)
    assert layers.Conv2D(4, 3).compute_output_shape((None, None, None, 1)) == (None, None, None, 4)
    assert layers.MaxPooling2D(3, 2, "same").compute_output_shape((5, 7, 7, 2)) == (5, 4, 4, 2)
    assert layers.AveragePooling2D(3, 2).compute_output_shape((5, 7, 8, 2)) == (5, 3, 3, 2)
    assert layers.Flatten().compute_output_shape((None, 4, 4, 256)) == (None, 4096)
    assert layers.Flatten().compute_output_shape((None, None, None, 512)) == (None, None)
    assert layers.Dense(10).compute_output_shape((None, 4096)) == (None, 10)


def test_initialisers_follow_keras_formulas():
    conv = layers.Conv2D(32, 3)
    conv.build((None, 8, 8, 16))
    limit = np.sqrt(6.0 / (3 * 3 * 16 + 3 * 3 * 32))
    kernel, bias = conv.get_weights()
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    assert abs(kernel.std() - limit / np.sqrt(3)) < 0.05 * limit
    assert np.all(bias == 0)
    dense = layers.Dense(7, kernel_initializer="he_normal", bias_initializer="ones", use_bias=True)
    dense.build((None, 4000))
    k, b = dense.get_weights()
    stddev = np.sqrt(2.0 / 4000) / 0.87962566103423978
    assert np.abs(k).max() <= 2 * stddev + 1e-7 and np.all(b == 1)
    assert abs(k.std() - np.sqrt(2.0 / 4000)) < 0.05 * np.sqrt(2.0 / 4000)


def test_output_size_zero_is_an_error():
    conv = layers.Conv2D(4, 5, name="conv2d_2")
    with pytest.raises(ValueError, match=r"Computed output size would be zero or negative for layer 'conv2d_2'\. "
                                         r"Received: input shape=\(None, 4, 4, 16\), kernel_size=\(5, 5\), "
                                         r"strides=\(1, 1\), padding='valid'\."):
        conv.build((None, 4, 4, 16))
    pool = layers.MaxPooling2D(3)
    with pytest.raises(ValueError, match=r"for layer 'max_pooling2d'.*pool_size=\(3, 3\)"):
        pool(np.zeros((1, 2, 5, 1)))


def test_input_checks_at_call_time():
    conv = layers.Conv2D(4, 3, name="conv2d_1")
    conv.build((None, 14, 14, 6))
    with pytest.raises(ValueError, match=r"Layer 'conv2d_1' expected input with 6 channels on the last axis, but "
                                         r"received input with shape \(32, 14, 14, 3\)\."):
        conv(np.zeros((32, 14, 14, 3)))
    with pytest.raises(ValueError, match=r"Layer 'conv2d_1' expected input with 6 channels"):
        conv.build((None, 14, 14, 3))  # rebuilding cannot change the existing weights
    with pytest.raises(ValueError, match=r"Layer 'conv2d_1' expected a 4-D input \(N, H, W, C\), but received input "
                                         r"with shape \(32, 14, 14\)\. Images need a channel axis"):
        conv(np.zeros((32, 14, 14)))
    dense = layers.Dense(3)
    dense.build((None, 5))
    with pytest.raises(ValueError, match=r"Layer 'dense' expected input with 5 features on the last axis"):
        dense(np.zeros((2, 4)))
    with pytest.raises(TypeError, match=r"real numeric array.*complex"):
        dense(np.zeros((2, 5), dtype=complex))
    with pytest.raises(TypeError, match=r"dtype=<U"):
        dense(np.array([["a"] * 5]))


def test_dense_after_undefined_dimension_says_what_to_do():
    dense = layers.Dense(10)
    with pytest.raises(ValueError, match=r"Dense layer 'dense' needs a defined last input dimension, but received "
                                         r"input shape \(None, None\)\. Give the model a fixed input size, e\.g\. "
                                         r"Input\(shape=\(32, 32, 3\)\)"):
        dense.build((None, None))


def test_conv_needs_defined_channels():
    with pytest.raises(ValueError, match=r"needs a defined number of input channels"):
        layers.Conv2D(4, 3).build((None, 8, 8, None))


# --------------------------------------------------------------------------- weights

def test_get_set_weights_and_errors():
    conv = layers.Conv2D(3, (2, 3), name="conv2d")
    conv.build((None, 6, 6, 2))
    with pytest.raises(ValueError, match=r"Layer 'conv2d' expected weight 'kernel' with shape \(2, 3, 2, 3\)\. "
                                         r"Received: shape=\(3, 2, 2, 3\)\."):
        conv.set_weights([np.zeros((3, 2, 2, 3)), np.zeros(3)])
    with pytest.raises(ValueError, match=r"Layer 'conv2d' expected weight 'bias' with shape \(3,\)\. "
                                         r"Received: shape=\(4,\)\."):
        conv.set_weights([np.zeros((2, 3, 2, 3)), np.zeros(4)])
    with pytest.raises(ValueError, match=r"expected a list of 2 weight arrays \['kernel', 'bias'\]\. "
                                         r"Received: a list of 1 arrays\."):
        conv.set_weights([np.zeros((2, 3, 2, 3))])
    kernel = np.arange(36, dtype=np.float64).reshape(2, 3, 2, 3)
    live = conv.weights[0]
    conv.set_weights([kernel, [1, 2, 3]])
    assert conv.weights[0] is live, "set_weights must copy in place (optimizer state is keyed by the array)"
    got = conv.get_weights()
    assert got[0].dtype == np.float32 and np.array_equal(got[0], kernel)
    got[0][...] = -1  # a copy: the layer is unchanged
    assert np.array_equal(conv.kernel, kernel)
    with pytest.raises(RuntimeError, match=r"has not been built yet.*before set_weights"):
        layers.Dense(2).set_weights([np.zeros((1, 2)), np.zeros(2)])
    no_bias = layers.Dense(4, use_bias=False)
    no_bias.build((None, 3))
    assert no_bias.weight_names == ["kernel"] and no_bias.count_params() == 12


def test_get_config_round_trip():
    conv = layers.Conv2D(8, (3, 2), strides=(2, 1), padding="same", activation="tanh", use_bias=False,
                         kernel_initializer="he_uniform", name="c")
    clone = layers.Conv2D.from_config(conv.get_config())
    assert clone.get_config() == conv.get_config()
    for layer in (layers.Dense(5, activation="softmax"), layers.MaxPooling2D((2, 3), strides=1, padding="same"),
                  layers.AveragePooling2D(2), layers.Flatten(), layers.Activation("sigmoid"),
                  layers.Dropout(0.25, seed=3), layers.InputLayer(shape=(None, None, 3))):
        assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()
    assert layers.get("Conv2D") is layers.Conv2D
    with pytest.raises(ValueError, match=r"Unknown layer class.*Received: class_name='LSTM'\."):
        layers.get("LSTM")


# --------------------------------------------------------------------------- forward

@pytest.mark.parametrize("shape, kernel_size, strides, padding", [
    ((2, 7, 6, 3), (3, 3), (1, 1), "valid"),
    ((1, 7, 6, 3), (2, 3), (2, 2), "same"),
    ((3, 5, 5, 1), (1, 1), (1, 1), "valid"),
    ((2, 6, 9, 2), (4, 2), (3, 2), "same"),
])
def test_conv2d_forward_matches_loop_reference(shape, kernel_size, strides, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    conv = layers.Conv2D(4, kernel_size, strides=strides, padding=padding, activation="relu",
                         bias_initializer="random_normal")
    out = conv(x)
    ref = oracle.conv2d_forward(x, conv.kernel, conv.bias, strides, padding, activation="relu")
    assert out.shape == ref.shape == conv.compute_output_shape(shape)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "softmax"])
def test_dense_forward_matches_numpy(activation):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    dense = layers.Dense(5, activation=activation, bias_initializer="random_uniform")
    out = dense(x)
    z = x.astype(np.float64) @ dense.kernel + dense.bias
    ref = {"linear": z, "relu": np.maximum(z, 0), "sigmoid": 1 / (1 + np.exp(-z)), "tanh": np.tanh(z),
           "softmax": np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)}[activation]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_dense_applies_to_the_last_axis():
    dense = layers.Dense(3, activation="relu")
    x = np.random.default_rng(2).standard_normal((2, 4, 5)).astype(np.float32)
    out = dense(x)
    assert out.shape == (2, 4, 3)
    np.testing.assert_allclose(out, np.maximum(x @ dense.kernel + dense.bias, 0), rtol=1e-5, atol=1e-6)


def test_pooling_forward_same_padding_counts_real_elements():
    x = np.arange(1, 26, dtype=np.float32).reshape(1, 5, 5, 1)
    avg = layers.AveragePooling2D(2, padding="same")(x)[0, :, :, 0]
    mx = layers.MaxPooling2D(2, padding="same")(x)[0, :, :, 0]
    assert avg.shape == mx.shape == (3, 3)
    # the last row/column windows hold only real elements from row/col 4 (extra padding bottom/right)
    np.testing.assert_allclose(avg[2, 2], 25.0)
    np.testing.assert_allclose(avg[0, 2], (5 + 10) / 2)
    np.testing.assert_allclose(avg[0, 0], (1 + 2 + 6 + 7) / 4)
    np.testing.assert_array_equal(mx, [[7, 9, 10], [17, 19, 20], [22, 24, 25]])


def test_flatten_uses_nhwc_order():
    x = np.arange(24, dtype=np.float32).reshape(2, 2, 3, 2)
    flat = layers.Flatten()(x)
    np.testing.assert_array_equal(flat, x.reshape(2, 12))


def test_uint8_input_is_converted_not_scaled():
    x = np.full((1, 4, 4, 1), 255, dtype=np.uint8)
    out = layers.AveragePooling2D(2)(x)
    assert out.dtype == np.float32 and np.all(out == 255.0)


def test_activation_module_functions():
    data = np.array([1, 5, -4, 3, -2])
    np.testing.assert_array_equal(activations.relu(data), [1, 5, 0, 3, 0])
    np.testing.assert_allclose(activations.sigmoid(data), 1 / (1 + np.exp(-data)), rtol=1e-6)
    np.testing.assert_allclose(activations.tanh(data), np.tanh(data), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(activations.linear(data), data.astype(np.float32))
    p = activations.softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 1001.0, 1002.0]]))
    np.testing.assert_allclose(p[0], [0.09003057, 0.24472847, 0.66524096], rtol=1e-6)
    np.testing.assert_allclose(p[1], p[0], rtol=1e-6)
    assert activations.get(None) == "linear" and activations.get("Softmax") == "softmax"
    with pytest.raises(ValueError, match=r"Received: activation='selu'"):
        activations.get("selu")


def test_dropout_is_inverted_seeded_and_identity_at_inference():
    x = np.ones((200, 50), dtype=np.float32)
    drop = layers.Dropout(0.3, seed=7)
    np.testing.assert_array_equal(drop(x), x)
    np.testing.assert_array_equal(drop(x, training=False), x)
    y = drop(x, training=True)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    g = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(drop.backward(g), g * y, rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.03  # inverted dropout keeps the expectation
    np.testing.assert_array_equal(layers.Dropout(0.3, seed=7)(x, training=True), y)
    # without a seed the masks come from the session generator
    utils.set_random_seed(5)
    a = layers.Dropout(0.5)(x, training=True)
    utils.set_random_seed(5)
    b = layers.Dropout(0.5)(x, training=True)
    np.testing.assert_array_equal(a, b)
    channel = layers.Dropout(0.5, noise_shape=(None, 1, 1, 3), seed=1)(np.ones((4, 5, 5, 3)), training=True)
    assert np.all(channel == channel[:, :1, :1, :])


# --------------------------------------------------------------------------- backward

def test_backward_needs_a_forward_and_the_right_shape():
    dense = layers.Dense(3)
    dense.build((None, 4))
    with pytest.raises(RuntimeError, match=r"no forward pass to differentiate"):
        dense.backward(np.zeros((2, 3)))
    dense(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"expected 'dout' with the forward output's shape \(2, 3\)\. "
                                         r"Received: dout.shape=\(2, 4\)\."):
        dense.backward(np.zeros((2, 4)))


def _distinct_input(shape, seed):
    """Values 0.1 apart (shuffled) so no max-pool window or ReLU flips within eps=1e-2."""
    rng = np.random.default_rng(seed)
    values = rng.permutation(int(np.prod(shape))).astype(np.float32) * 0.1
    return (values - values.mean()).reshape(shape)


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "softmax"])
@pytest.mark.parametrize("shape, kernel_size, strides, padding", [
    ((2, 7, 6, 3), (3, 3), (1, 1), "valid"),
    ((1, 6, 7, 2), (2, 3), (2, 2), "same"),
])
def test_conv2d_gradients(activation, shape, kernel_size, strides, padding):
    conv = layers.Conv2D(4, kernel_size, strides=strides, padding=padding, activation=activation,
                         bias_initializer="random_normal")
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    finite_difference_check(conv, x, seed=4)


def test_conv2d_gradients_without_bias_and_skipping_input_grad():
    conv = layers.Conv2D(3, 1, use_bias=False, activation="relu")
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 2)).astype(np.float32)
    _, grads = finite_difference_check(conv, x, seed=6)
    assert len(grads) == 1 and grads[0].shape == (1, 1, 2, 3)
    g = np.random.default_rng(7).standard_normal((2, 3, 4, 3)).astype(np.float32)
    conv(x)
    conv.backward(g)
    with_input = conv.get_gradients()[0].copy()
    conv(x)
    assert conv.backward(g, need_input_grad=False) is None
    np.testing.assert_array_equal(conv.get_gradients()[0], with_input)


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "softmax"])
def test_dense_gradients(activation):
    dense = layers.Dense(5, activation=activation, bias_initializer="random_normal")
    x = np.random.default_rng(7).standard_normal((3, 6)).astype(np.float32)
    finite_difference_check(dense, x, seed=8)


def test_dense_gradients_on_3d_input():
    dense = layers.Dense(4, activation="tanh")
    x = np.random.default_rng(9).standard_normal((2, 3, 5)).astype(np.float32)
    dx, _ = finite_difference_check(dense, x, seed=10)
    assert dx.shape == x.shape


@pytest.mark.parametrize("cls", [layers.MaxPooling2D, layers.AveragePooling2D])
@pytest.mark.parametrize("pool, strides, padding", [(2, None, "valid"), (3, 2, "same"), ((2, 3), 1, "valid")])
def test_pooling_gradients(cls, pool, strides, padding):
    layer = cls(pool, strides=strides, padding=padding)
    finite_difference_check(layer, _distinct_input((2, 5, 7, 3), seed=11), seed=12)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax", "linear"])
def test_activation_layer_gradients(name):
    x = _distinct_input((3, 2, 2, 4), seed=13) * 0.5
    finite_difference_check(layers.Activation(name), x, seed=14)


def test_flatten_gradients():
    x = np.random.default_rng(15).standard_normal((2, 3, 2, 2)).astype(np.float32)
    dx, _ = finite_difference_check(layers.Flatten(), x, seed=16)
    assert dx.shape == x.shape


def test_max_pool_tie_goes_to_first_maximum():
    x = np.array([[3, 3], [1, 3]], dtype=np.float32).reshape(1, 2, 2, 1)
    pool = layers.MaxPooling2D(2)
    pool(x)
    d = pool.backward(np.array([5.0], dtype=np.float32).reshape(1, 1, 1, 1))
    np.testing.assert_array_equal(d[0, :, :, 0], [[5, 0], [0, 0]])


@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh", "softmax", "leaky_relu"])
def test_layers_call_the_native_ops(activation):
    # The conv op with a fused (or following) activation gives the same output as the linear
    # conv then the activation op; and the layer's call is its spec run through pycnn.ops.
    x = np.random.default_rng(18).standard_normal((2, 8, 8, 3)).astype(np.float32)
    fused = layers.Conv2D(5, 3, activation=activation)
    plain = layers.Conv2D(5, 3)
    out = fused(x)
    plain.build((None, 8, 8, 3))
    plain.set_weights(fused.get_weights())
    np.testing.assert_allclose(out, ops.run("activation", [plain(x)], attrs={"activation": activation}),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(out, ops.run("conv2d", [x], fused.spec().params, fused.spec().attrs))
