"""Dense (a matmul over the last axis, as Keras's Dense on any rank), float64."""
from __future__ import annotations

import numpy as np

from .activation import activate, activation_backward
from .numeric import _f64


def dense_preactivation(inp, kernel, bias=None) -> np.ndarray:
    """z = inp @ kernel + bias: (..., IN) @ (IN, OUT) -> (..., OUT)."""
    z = _f64(inp) @ _f64(kernel)
    if bias is not None:
        z = z + _f64(bias)
    return z


def dense_forward(inp, kernel, bias=None, activation="linear") -> np.ndarray:
    return activate(dense_preactivation(inp, kernel, bias), activation)


def dense_backward(dout, inp, kernel, bias=None, activation="linear"):
    """(dinp, dkernel, dbias or None) with dz = dout * act'(z): dinp = dz kernel^T,
    dkernel = sum over rows of inp^T dz, dbias = sum over rows of dz."""
    x, w = _f64(inp), _f64(kernel)
    dz = activation_backward(dout, dense_preactivation(x, w, bias), activation)
    rows_x, rows_dz = x.reshape(-1, x.shape[-1]), dz.reshape(-1, dz.shape[-1])
    dbias = None if bias is None else rows_dz.sum(axis=0)
    return dz @ w.T, rows_x.T @ rows_dz, dbias
