"""LeakyReLU and the 'leaky_relu' activation name as layers: Keras's defaults (0.3 for the
layer, 0.2 for the activation name), the legacy ``alpha``, forward and backward against the
float64 oracle, Conv2D / Dense with activation='leaky_relu', specs and errors. The ops
themselves: test_ops_dense_activation.py."""
from __future__ import annotations

import numpy as np
import pytest

import oracle
import pycnn
from pycnn import layers, ops

FWD = dict(rtol=1e-5, atol=1e-5)
BWD = dict(rtol=1e-4, atol=1e-4)


def kinkless(rng, shape):
    """Inputs with |x| >= 1e-3, so finite differences never straddle the kink at 0."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 1e-3, 0.5, x)


def test_leaky_relu_layer_defaults_and_alpha(rng):
    x = kinkless(rng, (2, 3)).astype(np.float32)
    assert layers.LeakyReLU().negative_slope == 0.3
    oracle.assert_close(layers.LeakyReLU()(x), oracle.leaky_relu_forward(x, 0.3), **FWD)
    with pytest.warns(UserWarning, match="alpha"):
        legacy = layers.LeakyReLU(alpha=0.1)
    assert legacy.negative_slope == 0.1
    oracle.assert_close(legacy(x), oracle.leaky_relu_forward(x, 0.1), **FWD)
    # the activation name: Keras's activation default 0.2
    oracle.assert_close(pycnn.activations.leaky_relu(x), oracle.leaky_relu_forward(x, 0.2), **FWD)
    act = layers.Activation("leaky_relu")
    oracle.assert_close(act(x), oracle.leaky_relu_forward(x, 0.2), **FWD)
    G = rng.standard_normal(x.shape).astype(np.float32)
    oracle.assert_close(act.backward(G), oracle.leaky_relu_backward(G, x, 0.2), **BWD)
    layer = layers.LeakyReLU(0.25)
    layer(x)
    oracle.assert_close(layer.backward(G), oracle.leaky_relu_backward(G, x, 0.25), **BWD)


def test_specs_describe_the_ops():
    assert layers.LeakyReLU(0.25).spec() == ops.OpSpec("leaky_relu", {"negative_slope": 0.25})
    assert layers.Activation("leaky_relu").spec() == ops.OpSpec("activation", {"activation": "leaky_relu"})


def test_leaky_relu_errors():
    with pytest.raises(ValueError, match=r"negative_slope value of a Leaky ReLU layer.*negative_slope=-0.1"):
        layers.LeakyReLU(-0.1)
    with pytest.raises(ValueError, match=r"negative_slope=None"):
        layers.LeakyReLU(None)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments: beta"):
        layers.LeakyReLU(beta=1.0)


@pytest.mark.parametrize("kind", ["conv", "dense", "depthwise", "separable"])
def test_kernel_layers_with_leaky_relu_activation(kind, rng):
    """activation='leaky_relu' in a kernel layer equals the linear layer followed by the
    activation (slope 0.2), forward and backward, and its spec carries the name."""
    make = {"conv": lambda **kw: layers.Conv2D(4, 3, padding="same", **kw),
            "dense": lambda **kw: layers.Dense(4, **kw),
            "depthwise": lambda **kw: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", **kw),
            "separable": lambda **kw: layers.SeparableConv2D(4, 3, padding="same", **kw)}[kind]
    x = (rng.standard_normal((5, 6)) if kind == "dense" else rng.standard_normal((2, 5, 4, 3))).astype(np.float32)
    layer = make(activation="leaky_relu")
    out = layer(x)
    assert layer.spec().attrs["activation"] == "leaky_relu"
    layer_lin = make(activation=None)
    layer_lin.build(layer.input_shape)
    layer_lin.set_weights(layer.get_weights())
    z = layer_lin(x)
    oracle.assert_close(out, oracle.leaky_relu_forward(z, 0.2), **FWD)
    G = rng.standard_normal(out.shape).astype(np.float32)
    dinp = layer.backward(G)
    dlin = layer_lin.backward(oracle.leaky_relu_backward(G, z, 0.2).astype(np.float32))
    oracle.assert_close(dinp, dlin, **BWD)
    for a, b in zip(layer.get_gradients(), layer_lin.get_gradients()):
        oracle.assert_close(a, b, **BWD, scale_atol=True)


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_layer_matches_the_oracle_and_keras(approximate, rng):
    name = "gelu_approximate" if approximate else "gelu"
    layer = layers.GELU(approximate=approximate)
    assert layer.spec() == ops.OpSpec("activation", {"activation": name})
    x = (rng.standard_normal((3, 4, 5)) * 2).astype(np.float32)
    oracle.assert_close(layer(x), oracle.activate(x, name), **FWD)
    G = rng.standard_normal(x.shape).astype(np.float32)
    oracle.assert_close(layer.backward(G), oracle.activation_backward(G, x, name), **BWD)
    twin = layers.GELU.from_config(layer.get_config())
    assert twin.approximate == approximate
    oracle.assert_close(layers.Activation(name)(x), oracle.activate(x, name), **FWD)
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is an optional cross-check")
    np.testing.assert_allclose(layer(x), tf.keras.activations.gelu(x, approximate=approximate).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_gelu_function_keras_signature_and_as_an_activation_argument(rng):
    from pycnn import activations

    x = (rng.standard_normal((2, 7)) * 3).astype(np.float32)
    oracle.assert_close(activations.gelu(x), oracle.activate(x, "gelu"), **FWD)
    oracle.assert_close(activations.gelu(x, approximate=True), oracle.activate(x, "gelu_approximate"), **FWD)
    assert activations.get(activations.gelu) == "gelu" and activations.get("GELU") == "gelu"
    with pytest.raises(TypeError, match=r"approximate to be True or False.*Received: approximate='yes'"):
        activations.gelu(x, approximate="yes")
    dense = layers.Dense(3, activation="gelu")
    linear = layers.Dense(3)
    y = dense(x)
    linear.build(x.shape)
    linear.set_weights(dense.get_weights())
    oracle.assert_close(y, oracle.activate(linear(x), "gelu"), **FWD)
