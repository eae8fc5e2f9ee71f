"""Activation functions on NumPy arrays, computed by the native kernels.

``relu``, ``sigmoid``, ``tanh``, ``softmax`` (over the last axis), ``leaky_relu``
(Keras's activation default ``negative_slope=0.2``) and ``linear`` take any real numeric
array and return float32 of the same shape. Layers refer to activations by
name; :func:`get` turns a name, ``None`` or one of these functions into that name.

Each activation also has a backward that takes the forward *output* ``y`` (not the
input): ``relu' = y > 0``, ``sigmoid' = y (1 - y)``, ``tanh' = 1 - y**2`` and the softmax
Jacobian-vector product ``y * (dy - sum(dy * y))``. Layers call :func:`backward`.
"""
from __future__ import annotations

from typing import Any, Callable, Union

import numpy as np

from . import ops
from .utils import as_float32

#: Activations that conv2d_forward / dense_forward can fuse into the kernel.
FUSED = ("linear", "relu", "sigmoid", "tanh")
#: Every name a layer accepts. Softmax and leaky_relu run as their own op after the kernel.
NAMES = FUSED + ("softmax", "leaky_relu")
#: ``activation='leaky_relu'``'s slope, as ``keras.activations.leaky_relu`` (the LeakyReLU
#: layer's default is 0.3).
LEAKY_RELU_SLOPE = 0.2


def relu(x: Any) -> np.ndarray:
    """max(x, 0), element-wise. Returns float32 with the shape of ``x``."""
    return ops.relu_forward(as_float32(x, "relu()"))


def sigmoid(x: Any) -> np.ndarray:
    """1 / (1 + exp(-x)), element-wise. Returns float32 with the shape of ``x``."""
    return ops.sigmoid_forward(as_float32(x, "sigmoid()"))


def tanh(x: Any) -> np.ndarray:
    """Hyperbolic tangent, element-wise. Returns float32 with the shape of ``x``."""
    return ops.tanh_forward(as_float32(x, "tanh()"))


def softmax(x: Any) -> np.ndarray:
    """Softmax over the last axis (stable: the row maximum is subtracted before exp).

    Args:
        x: array of shape (..., K), at least 1-D.

    Returns:
        float32 array of the same shape whose last axis sums to 1.
    """
    return ops.softmax_forward(as_float32(x, "softmax()"))


def leaky_relu(x: Any, negative_slope: float = LEAKY_RELU_SLOPE) -> np.ndarray:
    """x where x > 0, else ``negative_slope * x``, element-wise (``negative_slope >= 0``).
    Returns float32 with the shape of ``x``."""
    return ops.leaky_relu_forward(as_float32(x, "leaky_relu()"), float(negative_slope))


def linear(x: Any) -> np.ndarray:
    """The identity (as float32): what ``activation=None`` means."""
    return as_float32(x, "linear()")


_BY_FUNCTION = {relu: "relu", sigmoid: "sigmoid", tanh: "tanh", softmax: "softmax", leaky_relu: "leaky_relu",
                linear: "linear"}
_FORWARD = {"relu": relu, "sigmoid": sigmoid, "tanh": tanh, "softmax": softmax, "leaky_relu": leaky_relu,
            "linear": linear}


def get(identifier: Union[None, str, Callable], owner: str = "get()") -> str:
    """Normalise an activation identifier to its name.

    Args:
        identifier: ``None`` (-> 'linear'), a name in any case, or one of the functions
            of this module.
        owner: who is asking, for the error message (e.g. ``Conv2D``).

    Returns:
        One of 'linear', 'relu', 'sigmoid', 'tanh', 'softmax', 'leaky_relu'.

    Raises:
        ValueError: for an unknown name or function.
    """
    if identifier is None:
        return "linear"
    if isinstance(identifier, str):
        name = identifier.lower()
        if name in NAMES:
            return name
    elif callable(identifier) and identifier in _BY_FUNCTION:
        return _BY_FUNCTION[identifier]
    raise ValueError(
        f"Invalid value for argument 'activation' of {owner}: expected one of "
        f"{', '.join(repr(n) for n in NAMES)} or None. Received: activation={identifier!r}.")


def forward(name: str, x: np.ndarray) -> np.ndarray:
    """Apply the named activation to a float32 array."""
    return _FORWARD[name](x)


def backward(name: str, dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. the activation's input, given ``dout`` w.r.t. its output ``out``."""
    if name == "linear":
        return dout
    if name == "softmax":
        return ops.softmax_backward(dout, out)
    if name == "leaky_relu":
        return ops.leaky_relu_backward(dout, out, LEAKY_RELU_SLOPE)
    return getattr(ops, f"{name}_backward")(dout, out)
