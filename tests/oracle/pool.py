"""Pooling, float64: max and average over windows, and their global forms.

Windows are listed explicitly (:func:`windows`): the real (unpadded) rows and columns each
output position covers. Padding never competes in a max and is never counted in a mean, as
in Keras. A max-pool gradient goes to the first maximum of its window in a row-major scan
(the argmax of :func:`maxpool2d_argmax`).
"""
from __future__ import annotations

import numpy as np

from .numeric import _f64
from .window import _pair, geometry


def windows(H, W, KH, KW, SH, SW, padding):
    """Yield (oh, ow, h0, h1, w0, w1): the real input rows h0:h1 and columns w0:w1 of each window."""
    OH, OW, PT, _, PL, _ = geometry(H, W, KH, KW, SH, SW, padding)
    for oh in range(OH):
        top = oh * SH - PT
        h0, h1 = max(top, 0), min(top + KH, H)
        for ow in range(OW):
            left = ow * SW - PL
            w0, w1 = max(left, 0), min(left + KW, W)
            yield oh, ow, h0, h1, w0, w1


def _window_args(pool_size, strides):
    KH, KW = _pair(pool_size)
    SH, SW = (KH, KW) if strides is None else _pair(strides)
    return KH, KW, SH, SW


def maxpool2d_argmax(inp, pool_size, strides=None, padding="valid") -> np.ndarray:
    """The winner of each window (int64, the output's shape) as its index within the sample,
    (ih * W + iw) * C + c; on ties the first maximum in a row-major scan of the window."""
    x = _f64(inp)
    N, H, W, C = x.shape
    KH, KW, SH, SW = _window_args(pool_size, strides)
    OH, OW, *_ = geometry(H, W, KH, KW, SH, SW, padding)
    argmax = np.empty((N, OH, OW, C), dtype=np.int64)
    channels = np.arange(C)
    for oh, ow, h0, h1, w0, w1 in windows(H, W, KH, KW, SH, SW, padding):
        k = x[:, h0:h1, w0:w1, :].reshape(N, -1, C).argmax(axis=1)  # first maximum on ties, (N, C)
        ih, iw = h0 + k // (w1 - w0), w0 + k % (w1 - w0)
        argmax[:, oh, ow, :] = (ih * W + iw) * C + channels
    return argmax


def maxpool2d_forward(inp, pool_size=2, strides=None, padding="valid") -> np.ndarray:
    """The maximum of each window over its real elements (strides None: the pool size)."""
    x = _f64(inp)
    N, H, W, C = x.shape
    KH, KW, SH, SW = _window_args(pool_size, strides)
    OH, OW, *_ = geometry(H, W, KH, KW, SH, SW, padding)
    out = np.empty((N, OH, OW, C))
    for oh, ow, h0, h1, w0, w1 in windows(H, W, KH, KW, SH, SW, padding):
        out[:, oh, ow, :] = x[:, h0:h1, w0:w1, :].max(axis=(1, 2))
    return out


def maxpool2d_backward(dout, inp, pool_size=2, strides=None, padding="valid") -> np.ndarray:
    """dinp: each dout element added to the input element that won its window."""
    d, x = _f64(dout), _f64(inp)
    N = x.shape[0]
    argmax = maxpool2d_argmax(x, pool_size, strides, padding)
    dinp = np.zeros((N, x[0].size))
    for n in range(N):
        np.add.at(dinp[n], argmax[n].ravel(), d[n].ravel())
    return dinp.reshape(x.shape)


def avgpool2d_forward(inp, pool_size=2, strides=None, padding="valid") -> np.ndarray:
    """The mean of each window over its real elements (padding is not counted, as in Keras)."""
    x = _f64(inp)
    N, H, W, C = x.shape
    KH, KW, SH, SW = _window_args(pool_size, strides)
    OH, OW, *_ = geometry(H, W, KH, KW, SH, SW, padding)
    out = np.empty((N, OH, OW, C))
    for oh, ow, h0, h1, w0, w1 in windows(H, W, KH, KW, SH, SW, padding):
        out[:, oh, ow, :] = x[:, h0:h1, w0:w1, :].mean(axis=(1, 2))
    return out


def avgpool2d_backward(dout, input_shape, pool_size=2, strides=None, padding="valid") -> np.ndarray:
    """dinp: each dout element spread evenly over the real elements of its window."""
    d = _f64(dout)
    N, H, W, C = input_shape
    KH, KW, SH, SW = _window_args(pool_size, strides)
    dinp = np.zeros((N, H, W, C))
    for oh, ow, h0, h1, w0, w1 in windows(H, W, KH, KW, SH, SW, padding):
        dinp[:, h0:h1, w0:w1, :] += d[:, oh, ow, None, None, :] / ((h1 - h0) * (w1 - w0))
    return dinp


def global_avgpool2d_forward(inp, keepdims=0) -> np.ndarray:
    return _f64(inp).mean(axis=(1, 2), keepdims=bool(keepdims))


def global_avgpool2d_backward(dout, input_shape) -> np.ndarray:
    """dout (N, C) or (N, 1, 1, C) spread evenly over each channel's H * W pixels."""
    N, H, W, C = input_shape
    d = _f64(dout).reshape(N, 1, 1, C)
    return np.broadcast_to(d / (H * W), (N, H, W, C)).copy()


def global_maxpool2d_forward(inp, keepdims=0) -> np.ndarray:
    return _f64(inp).max(axis=(1, 2), keepdims=bool(keepdims))


def global_maxpool2d_backward(dout, inp) -> np.ndarray:
    """dout (N, C) or (N, 1, 1, C) goes to the first maximum of each channel, in row-major order."""
    x = _f64(inp)
    N, H, W, C = x.shape
    d = _f64(dout).reshape(N, C)
    g = np.zeros_like(x)
    flat = x.reshape(N, H * W, C).argmax(axis=1)
    for n in range(N):
        for c in range(C):
            g[n, flat[n, c] // W, flat[n, c] % W, c] = d[n, c]
    return g
