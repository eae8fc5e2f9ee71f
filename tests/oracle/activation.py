"""Activations, float64: every name an op's ``activation`` attribute accepts, and the
leaky_relu op (its own slope). Gradients are taken from the pre-activation z (the C++
kernels use the output y: an independent route to the same numbers)."""
from __future__ import annotations

import math

import numpy as np

from .numeric import _f64
from .softmax import softmax_backward, softmax_forward

#: Every activation name (pycnn.ops.activations()).
ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu", "gelu", "gelu_approximate")
#: The element-wise ones (softmax couples the last axis).
ELEMENTWISE = ("linear", "relu", "sigmoid", "tanh", "leaky_relu", "gelu", "gelu_approximate")
#: The slope of the activation *name* 'leaky_relu' (keras.activations.leaky_relu's default);
#: the leaky_relu op (layers.LeakyReLU) has its own attribute, default 0.3.
LEAKY_RELU_ACTIVATION_SLOPE = 0.2
LEAKY_RELU_OP_SLOPE = 0.3


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-z)) written so that exp never overflows: exp(-|z|) <= 1.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_erf = np.vectorize(math.erf, otypes=[np.float64])
_GELU_C = math.sqrt(2.0 / math.pi)  # gelu_approximate: 0.5 x (1 + tanh(c (x + 0.044715 x^3)))


def _gelu(z: np.ndarray) -> np.ndarray:
    """Keras's exact GELU: x P(X <= x) for X ~ N(0, 1) = 0.5 x (1 + erf(x / sqrt(2)))."""
    return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))


def _gelu_grad(z: np.ndarray) -> np.ndarray:
    """d/dx [x Phi(x)] = Phi(x) + x phi(x)."""
    return 0.5 * (1.0 + _erf(z / math.sqrt(2.0))) + z * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def _gelu_approximate(z: np.ndarray) -> np.ndarray:
    return 0.5 * z * (1.0 + np.tanh(_GELU_C * (z + 0.044715 * z ** 3)))


def _gelu_approximate_grad(z: np.ndarray) -> np.ndarray:
    t = np.tanh(_GELU_C * (z + 0.044715 * z ** 3))
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _GELU_C * (1.0 + 3 * 0.044715 * z * z)


def leaky_relu_forward(inp, negative_slope) -> np.ndarray:
    x = _f64(inp)
    return np.where(x > 0, x, negative_slope * x)


def leaky_relu_backward(dout, inp, negative_slope) -> np.ndarray:
    """From the *input* x: dout where x > 0, else negative_slope * dout (at 0 the slope, as Keras)."""
    return np.where(_f64(inp) > 0, _f64(dout), negative_slope * _f64(dout))


def activate(z, activation: str = "linear") -> np.ndarray:
    """act(z); softmax over the last axis."""
    z = _f64(z)
    if activation == "linear":
        return z.copy()
    if activation == "relu":
        return np.maximum(z, 0.0)
    if activation == "sigmoid":
        return _sigmoid(z)
    if activation == "tanh":
        return np.tanh(z)
    if activation == "softmax":
        return softmax_forward(z)
    if activation == "leaky_relu":
        return leaky_relu_forward(z, LEAKY_RELU_ACTIVATION_SLOPE)
    if activation == "gelu":
        return _gelu(z)
    if activation == "gelu_approximate":
        return _gelu_approximate(z)
    raise ValueError(f"unknown activation {activation!r}")


def activation_backward(dout, z, activation: str = "linear") -> np.ndarray:
    """d loss / d z from d loss / d act(z), for every activation (softmax: the Jacobian product)."""
    d, z = _f64(dout), _f64(z)
    if activation == "linear":
        return d.copy()
    if activation == "relu":
        return d * (z > 0)
    if activation == "sigmoid":
        s = _sigmoid(z)
        return d * s * (1.0 - s)
    if activation == "tanh":
        return d * (1.0 - np.tanh(z) ** 2)
    if activation == "softmax":
        return softmax_backward(d, softmax_forward(z))
    if activation == "leaky_relu":
        return leaky_relu_backward(d, z, LEAKY_RELU_ACTIVATION_SLOPE)
    if activation == "gelu":
        return d * _gelu_grad(z)
    if activation == "gelu_approximate":
        return d * _gelu_approximate_grad(z)
    raise ValueError(f"unknown activation {activation!r}")


def activation_grad(out, activation: str = "linear") -> np.ndarray:
    """d act / d z of an element-wise activation, expressed through its output y = act(z)
    (GELU is not invertible from its output: use activation_backward)."""
    y = _f64(out)
    if activation == "linear":
        return np.ones_like(y)
    if activation == "relu":
        return (y > 0).astype(np.float64)
    if activation == "sigmoid":
        return y * (1.0 - y)
    if activation == "tanh":
        return 1.0 - y * y
    if activation == "leaky_relu":
        return np.where(y > 0, 1.0, LEAKY_RELU_ACTIVATION_SLOPE)
    raise ValueError(f"no element-wise derivative for activation {activation!r}")
