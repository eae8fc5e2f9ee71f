"""Ops that keep the values and change the shape: flatten, reshape, identity (float64)."""
from __future__ import annotations

import numpy as np

from .numeric import _f64


def flatten_forward(inp) -> np.ndarray:
    x = _f64(inp)
    return x.reshape(x.shape[0], -1).copy()  # row-major: NHWC order


def reshape_forward(inp, target_shape) -> np.ndarray:
    """Each sample reshaped to ``target_shape`` (one -1 inferred), row-major."""
    x = _f64(inp)
    return x.reshape((x.shape[0],) + tuple(target_shape)).copy()


def reshape_backward(dout, inp) -> np.ndarray:
    return _f64(dout).reshape(np.shape(inp)).copy()


def identity_forward(inp) -> np.ndarray:
    return _f64(inp).copy()
