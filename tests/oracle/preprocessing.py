"""Rescaling and the random image layers (flip, crop, translation), float64, with loops where
a loop is clearer."""
from __future__ import annotations

import math

import numpy as np

from .numeric import _f64


def rescaling_forward(inp, scale, offset) -> np.ndarray:
    """x * scale + offset; scale and offset one value or one per channel of the last axis."""
    return _f64(inp) * _f64(scale) + _f64(offset)


def rescaling_backward(dout, scale) -> np.ndarray:
    return _f64(dout) * _f64(scale)


def flip(images, flips, mode) -> np.ndarray:
    x = _f64(images)
    out = x.copy()
    n, h, w, _ = x.shape
    for i in range(n):
        if not flips[i]:
            continue
        for y in range(h):
            for xx in range(w):
                sy = h - 1 - y if mode in ("vertical", "horizontal_and_vertical") else y
                sx = w - 1 - xx if mode in ("horizontal", "horizontal_and_vertical") else xx
                out[i, y, xx] = x[i, sy, sx]
    return out


def crop(images, tops, lefts, height, width) -> np.ndarray:
    x = _f64(images)
    return np.stack([x[i, tops[i]:tops[i] + height, lefts[i]:lefts[i] + width] for i in range(len(x))])


def extended_pixel(k: int, n: int, fill_mode: str):
    """The pixel an integer position k on an axis of n pixels reads, or None for the fill value."""
    if 0 <= k < n:
        return k
    if fill_mode == "constant":
        return None
    if fill_mode == "nearest":
        return min(max(k, 0), n - 1)
    if fill_mode == "wrap":
        return k % n
    # reflect: mirror about the outer edge of the border pixel until inside (d c b a | a b c d | d c b a)
    while not 0 <= k < n:
        k = -1 - k if k < 0 else 2 * n - 1 - k
    return k


def translate(images, dy, dx, fill_mode="reflect", interpolation="bilinear", fill_value=0.0) -> np.ndarray:
    """out[n, i, j] samples image n at (i - dy[n], j - dx[n]), the image extended by fill_mode."""
    x = _f64(images)
    n, h, w, c = x.shape
    out = np.zeros_like(x)

    def value(i, r, s):
        pr, ps = extended_pixel(r, h, fill_mode), extended_pixel(s, w, fill_mode)
        if pr is None or ps is None:
            return np.full(c, float(fill_value))
        return x[i, pr, ps]

    for i in range(n):
        for y in range(h):
            for xx in range(w):
                # positions in float32, as Keras computes them
                r = float(np.float32(y) - np.float32(dy[i]))
                s = float(np.float32(xx) - np.float32(dx[i]))
                if interpolation == "nearest":
                    out[i, y, xx] = value(i, math.floor(r + 0.5), math.floor(s + 0.5))
                    continue
                r0, s0 = math.floor(r), math.floor(s)
                fr, fs = r - r0, s - s0
                out[i, y, xx] = ((1 - fr) * (1 - fs) * value(i, r0, s0) + (1 - fr) * fs * value(i, r0, s0 + 1)
                                 + fr * (1 - fs) * value(i, r0 + 1, s0) + fr * fs * value(i, r0 + 1, s0 + 1))
    return out
