"""float64 NumPy references for the dilated / grouped conv2d, depthwise conv2d and separable
conv2d kernels (csrc/conv2d_grouped.cpp, csrc/depthwise_conv2d.cpp). Written for
obviousness: one strided slice of the padded input per kernel tap.

Dilation follows TensorFlow: a KH x KW kernel with dilation (DH, DW) covers
(KH - 1) * DH + 1 rows and (KW - 1) * DW + 1 columns, and 'same' padding is computed for
that extent. Groups follow Keras: input channels and filters are split into `groups`
contiguous blocks, block g of the filters sees block g of the channels only.
"""
from __future__ import annotations

import numpy as np

from reference import _f64, _pair, activate, activation_grad, output_size, same_padding


def dilated_geometry(H, W, KH, KW, SH, SW, DH, DW, padding):
    """(OH, OW, PT, PB, PL, PR) for the dilated extent; raises if an output size is below 1."""
    EKH, EKW = (KH - 1) * DH + 1, (KW - 1) * DW + 1
    OH, OW = output_size(H, EKH, SH, padding), output_size(W, EKW, SW, padding)
    if OH < 1 or OW < 1:
        raise ValueError(f"output size would be {OH}x{OW} for input {H}x{W}, dilated window {EKH}x{EKW}.")
    if padding == "same":
        PT, PB = same_padding(H, EKH, SH)
        PL, PR = same_padding(W, EKW, SW)
    else:
        PT = PB = PL = PR = 0
    return OH, OW, PT, PB, PL, PR


def _tap_slices(kh, kw, SH, SW, DH, DW, OH, OW):
    """Index of the padded-input pixels under tap (kh, kw) for every output position."""
    return (slice(None), slice(kh * DH, kh * DH + SH * (OH - 1) + 1, SH),
            slice(kw * DW, kw * DW + SW * (OW - 1) + 1, SW), slice(None))


def _dz(dout, out, activation):
    return _f64(dout) if activation == "linear" else _f64(dout) * activation_grad(out, activation)


# ----------------------------------------------------------------------------- grouped conv2d


def conv2d_grouped_forward(inp, weight, bias=None, strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                           groups=1, activation="linear"):
    """out[n, oh, ow, f] = act(bias[f] + sum_{kh, kw, c < Cg} xpad[n, oh*SH + kh*DH, ow*SW + kw*DW, g*Cg + c]
    * weight[kh, kw, c, f]) with g = f // Fg, Cg = C // groups, Fg = F // groups."""
    x, w = _f64(inp), _f64(weight)
    N, H, W, C = x.shape
    KH, KW, Cg, F = w.shape
    G = groups
    assert C % G == 0 and F % G == 0 and Cg == C // G, (x.shape, w.shape, G)
    Fg = F // G
    (SH, SW), (DH, DW) = _pair(strides), _pair(dilation_rate)
    OH, OW, PT, PB, PL, PR = dilated_geometry(H, W, KH, KW, SH, SW, DH, DW, padding)
    xp = np.pad(x, ((0, 0), (PT, PB), (PL, PR), (0, 0)))
    z = np.zeros((N, OH, OW, F))
    for kh in range(KH):
        for kw in range(KW):
            tap = xp[_tap_slices(kh, kw, SH, SW, DH, DW, OH, OW)]
            for g in range(G):
                z[..., g * Fg:(g + 1) * Fg] += tap[..., g * Cg:(g + 1) * Cg] @ w[kh, kw, :, g * Fg:(g + 1) * Fg]
    if bias is not None:
        z += _f64(bias)
    return activate(z, activation)


def conv2d_grouped_backward(dout, inp, weight, out=None, strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                            groups=1, activation="linear", has_bias=True, need_dinp=True):
    """(dinp or None, dweight, dbias or None) of conv2d_grouped_forward, tap by tap and group by group."""
    x, w = _f64(inp), _f64(weight)
    N, H, W, C = x.shape
    KH, KW, Cg, F = w.shape
    G, Fg = groups, F // groups
    (SH, SW), (DH, DW) = _pair(strides), _pair(dilation_rate)
    OH, OW, PT, PB, PL, PR = dilated_geometry(H, W, KH, KW, SH, SW, DH, DW, padding)
    dz = _dz(dout, out, activation)
    xp = np.pad(x, ((0, 0), (PT, PB), (PL, PR), (0, 0)))
    dxp, dweight = np.zeros_like(xp), np.zeros_like(w)
    for kh in range(KH):
        for kw in range(KW):
            idx = _tap_slices(kh, kw, SH, SW, DH, DW, OH, OW)
            tap = xp[idx]
            for g in range(G):
                cs, fs = slice(g * Cg, (g + 1) * Cg), slice(g * Fg, (g + 1) * Fg)
                dweight[kh, kw, :, fs] = np.einsum("nhwc,nhwf->cf", tap[..., cs], dz[..., fs])
                dxp[idx[:3] + (cs,)] += dz[..., fs] @ w[kh, kw, :, fs].T
    dbias = dz.sum(axis=(0, 1, 2)) if has_bias else None
    dinp = dxp[:, PT:PT + H, PL:PL + W, :].copy() if need_dinp else None
    return dinp, dweight, dbias


# ----------------------------------------------------------------------------- depthwise conv2d


def depthwise_conv2d_forward(inp, weight, bias=None, strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                             activation="linear"):
    """out[n, oh, ow, c*M + m] = act(bias[c*M + m] + sum_{kh, kw} xpad[n, oh*SH + kh*DH, ow*SW + kw*DW, c]
    * weight[kh, kw, c, m]); weight (KH, KW, C, M) -> out (N, OH, OW, C*M)."""
    x, w = _f64(inp), _f64(weight)
    N, H, W, C = x.shape
    KH, KW, C2, M = w.shape
    assert C2 == C, (x.shape, w.shape)
    (SH, SW), (DH, DW) = _pair(strides), _pair(dilation_rate)
    OH, OW, PT, PB, PL, PR = dilated_geometry(H, W, KH, KW, SH, SW, DH, DW, padding)
    xp = np.pad(x, ((0, 0), (PT, PB), (PL, PR), (0, 0)))
    z = np.zeros((N, OH, OW, C, M))
    for kh in range(KH):
        for kw in range(KW):
            z += xp[_tap_slices(kh, kw, SH, SW, DH, DW, OH, OW)][..., None] * w[kh, kw]
    z = z.reshape(N, OH, OW, C * M)
    if bias is not None:
        z += _f64(bias)
    return activate(z, activation)


def depthwise_conv2d_backward(dout, inp, weight, out=None, strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                              activation="linear", has_bias=True, need_dinp=True):
    """(dinp or None, dweight (KH, KW, C, M), dbias (C*M) or None) of depthwise_conv2d_forward."""
    x, w = _f64(inp), _f64(weight)
    N, H, W, C = x.shape
    KH, KW, _, M = w.shape
    (SH, SW), (DH, DW) = _pair(strides), _pair(dilation_rate)
    OH, OW, PT, PB, PL, PR = dilated_geometry(H, W, KH, KW, SH, SW, DH, DW, padding)
    dz = _dz(dout, out, activation)
    dz5 = dz.reshape(N, OH, OW, C, M)
    xp = np.pad(x, ((0, 0), (PT, PB), (PL, PR), (0, 0)))
    dxp, dweight = np.zeros_like(xp), np.zeros_like(w)
    for kh in range(KH):
        for kw in range(KW):
            idx = _tap_slices(kh, kw, SH, SW, DH, DW, OH, OW)
            dweight[kh, kw] = np.einsum("nhwc,nhwcm->cm", xp[idx], dz5)
            dxp[idx] += np.einsum("nhwcm,cm->nhwc", dz5, w[kh, kw])
    dbias = dz.sum(axis=(0, 1, 2)) if has_bias else None
    dinp = dxp[:, PT:PT + H, PL:PL + W, :].copy() if need_dinp else None
    return dinp, dweight, dbias


# ----------------------------------------------------------------------------- separable conv2d


def separable_conv2d_forward(inp, depthwise, pointwise, bias=None, strides=(1, 1), padding="valid",
                             dilation_rate=(1, 1), activation="linear"):
    """act(bias + depthwise_conv2d(inp) @ pointwise[0, 0]); pointwise (1, 1, C*M, F)."""
    mid = depthwise_conv2d_forward(inp, depthwise, None, strides, padding, dilation_rate)
    z = mid @ _f64(pointwise)[0, 0]
    if bias is not None:
        z += _f64(bias)
    return activate(z, activation)


def separable_conv2d_backward(dout, inp, depthwise, pointwise, out=None, strides=(1, 1), padding="valid",
                              dilation_rate=(1, 1), activation="linear", has_bias=True, need_dinp=True):
    """(dinp or None, ddepthwise, dpointwise, dbias or None)."""
    mid = depthwise_conv2d_forward(inp, depthwise, None, strides, padding, dilation_rate)
    dz = _dz(dout, out, activation)
    pw = _f64(pointwise)[0, 0]
    dpointwise = np.einsum("nhwk,nhwf->kf", mid, dz)[None, None]
    dbias = dz.sum(axis=(0, 1, 2)) if has_bias else None
    dinp, ddepthwise, _ = depthwise_conv2d_backward(dz @ pw.T, inp, depthwise, None, strides, padding,
                                                    dilation_rate, has_bias=False, need_dinp=need_dinp)
    return dinp, ddepthwise, dpointwise, dbias
