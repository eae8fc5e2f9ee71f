"""Convolutions, float64: conv2d (strided, dilated, grouped), depthwise_conv2d and
separable_conv2d, forward and backward. Written for obviousness: one strided slice of the
zero-padded input per kernel tap, one matmul per tap (and per group).

Layout as Keras: inputs (N, H, W, C); conv2d kernel (KH, KW, C / groups, F); depthwise
kernel (KH, KW, C, M) giving channel c * M + m; pointwise kernel (1, 1, C * M, F).
Dilation as TensorFlow: KH taps DH apart cover (KH - 1) * DH + 1 rows, and 'same' padding is
computed for that extent. Groups as Keras: channels and filters split into ``groups``
contiguous blocks; filter block g sees channel block g only.

Backward functions take ``dout`` and the forward's arguments, recompute the pre-activation
z themselves and return the gradient of every array argument (None for an absent bias).
"""
from __future__ import annotations

import numpy as np

from .activation import activate, activation_backward
from .numeric import _f64
from .window import _pair, geometry


def _taps(KH, KW, SH, SW, DH, DW, OH, OW):
    """For every tap (kh, kw): the index of the padded-input pixels it reads, (N, OH, OW, C)."""
    for kh in range(KH):
        for kw in range(KW):
            yield kh, kw, (slice(None), slice(kh * DH, kh * DH + SH * (OH - 1) + 1, SH),
                           slice(kw * DW, kw * DW + SW * (OW - 1) + 1, SW), slice(None))


def _padded(x, PT, PB, PL, PR):
    return np.pad(x, ((0, 0), (PT, PB), (PL, PR), (0, 0)))


# ----------------------------------------------------------------------------- conv2d


def conv2d_preactivation(inp, kernel, bias=None, strides=(1, 1), padding="valid", dilation_rate=(1, 1), groups=1):
    """z[n, oh, ow, f] = bias[f] + sum_{kh, kw, c < Cg} xpad[n, oh*SH + kh*DH, ow*SW + kw*DW, g*Cg + c]
    * kernel[kh, kw, c, f] with g = f // Fg, Cg = C // groups, Fg = F // groups."""
    x, w = _f64(inp), _f64(kernel)
    N, H, W, C = x.shape
    KH, KW, Cg, F = w.shape
    G = int(groups)
    assert C % G == 0 and F % G == 0 and Cg == C // G, (x.shape, w.shape, G)
    Fg = F // G
    (SH, SW), (DH, DW) = _pair(strides), _pair(dilation_rate)
    OH, OW, PT, PB, PL, PR = geometry(H, W, KH, KW, SH, SW, padding, DH, DW)
    xp = _padded(x, PT, PB, PL, PR)
    z = np.zeros((N, OH, OW, F))
    for kh, kw, idx in _taps(KH, KW, SH, SW, DH, DW, OH, OW):
        tap = xp[idx]
        for g in range(G):
            z[..., g * Fg:(g + 1) * Fg] += tap[..., g * Cg:(g + 1) * Cg] @ w[kh, kw, :, g * Fg:(g + 1) * Fg]
    if bias is not None:
        z += _f64(bias)
    return z


def conv2d_forward(inp, kernel, bias=None, strides=(1, 1), padding="valid", activation="linear", dilation_rate=(1, 1),
                   groups=1):
    """act(conv2d_preactivation(...)); softmax over the filters."""
    return activate(conv2d_preactivation(inp, kernel, bias, strides, padding, dilation_rate, groups), activation)


def conv2d_backward(dout, inp, kernel, bias=None, strides=(1, 1), padding="valid", activation="linear",
                    dilation_rate=(1, 1), groups=1):
    """(dinp, dkernel, dbias or None). With dz = dout * act'(z): dbias[f] = sum dz[..., f];
    per tap and group, dkernel = tap^T dz and dxpad[tap] += dz kernel^T; dinp is dxpad
    without its padding."""
    x, w = _f64(inp), _f64(kernel)
    N, H, W, C = x.shape
    KH, KW, Cg, F = w.shape
    G = int(groups)
    Fg = F // G
    (SH, SW), (DH, DW) = _pair(strides), _pair(dilation_rate)
    OH, OW, PT, PB, PL, PR = geometry(H, W, KH, KW, SH, SW, padding, DH, DW)
    z = conv2d_preactivation(x, w, bias, strides, padding, dilation_rate, groups)
    dz = activation_backward(dout, z, activation)
    xp = _padded(x, PT, PB, PL, PR)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for kh, kw, idx in _taps(KH, KW, SH, SW, DH, DW, OH, OW):
        tap = xp[idx]
        for g in range(G):
            cs, fs = slice(g * Cg, (g + 1) * Cg), slice(g * Fg, (g + 1) * Fg)
            dw[kh, kw, :, fs] = np.einsum("nhwc,nhwf->cf", tap[..., cs], dz[..., fs])
            dxp[idx[:3] + (cs,)] += dz[..., fs] @ w[kh, kw, :, fs].T
    dbias = None if bias is None else dz.sum(axis=(0, 1, 2))
    return dxp[:, PT:PT + H, PL:PL + W, :].copy(), dw, dbias


# ----------------------------------------------------------------------------- depthwise


def depthwise_conv2d_preactivation(inp, kernel, bias=None, strides=(1, 1), padding="valid", dilation_rate=(1, 1)):
    """z[n, oh, ow, c*M + m] = bias[c*M + m] + sum_{kh, kw} xpad[n, oh*SH + kh*DH, ow*SW + kw*DW, c]
    * kernel[kh, kw, c, m]; kernel (KH, KW, C, M) -> z (N, OH, OW, C*M)."""
    x, w = _f64(inp), _f64(kernel)
    N, H, W, C = x.shape
    KH, KW, C2, M = w.shape
    assert C2 == C, (x.shape, w.shape)
    (SH, SW), (DH, DW) = _pair(strides), _pair(dilation_rate)
    OH, OW, PT, PB, PL, PR = geometry(H, W, KH, KW, SH, SW, padding, DH, DW)
    xp = _padded(x, PT, PB, PL, PR)
    z = np.zeros((N, OH, OW, C, M))
    for kh, kw, idx in _taps(KH, KW, SH, SW, DH, DW, OH, OW):
        z += xp[idx][..., None] * w[kh, kw]
    z = z.reshape(N, OH, OW, C * M)
    if bias is not None:
        z += _f64(bias)
    return z


def depthwise_conv2d_forward(inp, kernel, bias=None, strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                             activation="linear"):
    return activate(depthwise_conv2d_preactivation(inp, kernel, bias, strides, padding, dilation_rate), activation)


def _depthwise_linear_backward(dz, x, w, strides, padding, dilation_rate):
    """(dinp, dkernel) of the linear depthwise map, for dz (N, OH, OW, C*M)."""
    N, H, W, C = x.shape
    KH, KW, _, M = w.shape
    (SH, SW), (DH, DW) = _pair(strides), _pair(dilation_rate)
    OH, OW, PT, PB, PL, PR = geometry(H, W, KH, KW, SH, SW, padding, DH, DW)
    dz5 = dz.reshape(N, OH, OW, C, M)
    xp = _padded(x, PT, PB, PL, PR)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for kh, kw, idx in _taps(KH, KW, SH, SW, DH, DW, OH, OW):
        dw[kh, kw] = np.einsum("nhwc,nhwcm->cm", xp[idx], dz5)
        dxp[idx] += np.einsum("nhwcm,cm->nhwc", dz5, w[kh, kw])
    return dxp[:, PT:PT + H, PL:PL + W, :].copy(), dw


def depthwise_conv2d_backward(dout, inp, kernel, bias=None, strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                              activation="linear"):
    """(dinp, dkernel (KH, KW, C, M), dbias (C*M) or None)."""
    x, w = _f64(inp), _f64(kernel)
    z = depthwise_conv2d_preactivation(x, w, bias, strides, padding, dilation_rate)
    dz = activation_backward(dout, z, activation)
    dinp, dw = _depthwise_linear_backward(dz, x, w, strides, padding, dilation_rate)
    return dinp, dw, None if bias is None else dz.sum(axis=(0, 1, 2))


# ----------------------------------------------------------------------------- separable


def separable_conv2d_forward(inp, depthwise_kernel, pointwise_kernel, bias=None, strides=(1, 1), padding="valid",
                             dilation_rate=(1, 1), activation="linear"):
    """act(bias + depthwise_conv2d(inp) @ pointwise_kernel[0, 0]); pointwise (1, 1, C*M, F)."""
    mid = depthwise_conv2d_preactivation(inp, depthwise_kernel, None, strides, padding, dilation_rate)
    z = mid @ _f64(pointwise_kernel)[0, 0]
    if bias is not None:
        z += _f64(bias)
    return activate(z, activation)


def separable_conv2d_backward(dout, inp, depthwise_kernel, pointwise_kernel, bias=None, strides=(1, 1),
                              padding="valid", dilation_rate=(1, 1), activation="linear"):
    """(dinp, ddepthwise_kernel, dpointwise_kernel, dbias or None)."""
    x, w = _f64(inp), _f64(depthwise_kernel)
    pw = _f64(pointwise_kernel)[0, 0]
    mid = depthwise_conv2d_preactivation(x, w, None, strides, padding, dilation_rate)
    z = mid @ pw + (0.0 if bias is None else _f64(bias))
    dz = activation_backward(dout, z, activation)
    dpointwise = np.einsum("nhwk,nhwf->kf", mid, dz)[None, None]
    dinp, ddepthwise = _depthwise_linear_backward(dz @ pw.T, x, w, strides, padding, dilation_rate)
    return dinp, ddepthwise, dpointwise, None if bias is None else dz.sum(axis=(0, 1, 2))
