"""Zero padding and cropping of H and W, float64, with explicit loops where a loop is clearer."""
from __future__ import annotations

import numpy as np

from .numeric import _f64


def zero_padding2d_forward(inp, top, bottom, left, right) -> np.ndarray:
    x = _f64(inp)
    n, h, w, c = x.shape
    out = np.zeros((n, top + h + bottom, left + w + right, c))
    for y in range(h):
        for xx in range(w):
            out[:, top + y, left + xx, :] = x[:, y, xx, :]
    return out


def zero_padding2d_backward(dout, top, bottom, left, right) -> np.ndarray:
    d = _f64(dout)
    return d[:, top:d.shape[1] - bottom, left:d.shape[2] - right, :].copy()


def cropping2d_forward(inp, top, bottom, left, right) -> np.ndarray:
    x = _f64(inp)
    return x[:, top:x.shape[1] - bottom, left:x.shape[2] - right, :].copy()


def cropping2d_backward(dout, input_shape, top, bottom, left, right) -> np.ndarray:
    dinp = np.zeros(input_shape)
    d = _f64(dout)
    dinp[:, top:top + d.shape[1], left:left + d.shape[2], :] = d
    return dinp
