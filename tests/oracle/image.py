"""tf.image.sobel_edges and tf.image.image_gradients, float64."""
from __future__ import annotations

import numpy as np

from .numeric import _f64

SOBEL_DY = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64)
SOBEL_DX = SOBEL_DY.T.copy()  # [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]


def sobel_edges_forward(inp) -> np.ndarray:
    """REFLECT-pad by one pixel, correlate each channel with the dy and dx kernels;
    (N, H, W, C) -> (N, H, W, C, 2), last axis [dy, dx]."""
    x = _f64(inp)
    N, H, W, C = x.shape
    if H < 2 or W < 2:
        raise ValueError("sobel_edges needs H, W >= 2")
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    out = np.zeros((N, H, W, C, 2))
    for a in range(3):
        for b in range(3):
            tap = xp[:, a:a + H, b:b + W, :]
            out[..., 0] += SOBEL_DY[a, b] * tap
            out[..., 1] += SOBEL_DX[a, b] * tap
    return out


def sobel_edges_backward(dout) -> np.ndarray:
    """Adjoint of sobel_edges_forward: each tap's gradient goes to the padded pixel it read,
    then the padding's gradient folds back onto the pixels it mirrors."""
    d = _f64(dout)
    N, H, W, C, _ = d.shape
    gp = np.zeros((N, H + 2, W + 2, C))
    for a in range(3):
        for b in range(3):
            gp[:, a:a + H, b:b + W, :] += SOBEL_DY[a, b] * d[..., 0] + SOBEL_DX[a, b] * d[..., 1]
    g = gp[:, 1:H + 1, 1:W + 1, :].copy()
    g[:, 1, :, :] += gp[:, 0, 1:W + 1, :]        # row -1 mirrors row 1
    g[:, H - 2, :, :] += gp[:, H + 1, 1:W + 1, :]  # row H mirrors row H - 2
    # columns, including the corners (which mirror twice)
    col_left = gp[:, :, 0, :].copy()
    col_right = gp[:, :, W + 1, :].copy()
    col_left[:, 2, :] += col_left[:, 0, :]
    col_left[:, H - 1, :] += col_left[:, H + 1, :]
    col_right[:, 2, :] += col_right[:, 0, :]
    col_right[:, H - 1, :] += col_right[:, H + 1, :]
    g[:, :, 1, :] += col_left[:, 1:H + 1, :]
    g[:, :, W - 2, :] += col_right[:, 1:H + 1, :]
    return g


def image_gradient_forward(inp, axis: int) -> np.ndarray:
    """One half of tf.image.image_gradients: forward differences along H (axis 0, dy) or W
    (axis 1, dx), zero in the last row / column."""
    x = _f64(inp)
    out = np.zeros_like(x)
    if axis == 0:
        out[:, :-1] = x[:, 1:] - x[:, :-1]
    else:
        out[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return out


def image_gradients(inp):
    """tf.image.image_gradients: (dy, dx)."""
    return image_gradient_forward(inp, 0), image_gradient_forward(inp, 1)


def image_gradient_backward(dout, axis: int) -> np.ndarray:
    d = _f64(dout)
    g = np.zeros_like(d)
    if axis == 0:
        g[:, 1:] += d[:, :-1]
        g[:, :-1] -= d[:, :-1]
    else:
        g[:, :, 1:] += d[:, :, :-1]
        g[:, :, :-1] -= d[:, :, :-1]
    return g
